"""tradepulse-vault: the Vault configuration of one environment (the current stack).

Deploys, from the ``tradepulse-vault:spec`` key of ``Pulumi.<stack>.yaml``:
KV v2 engines, the database secrets engine and its roles, JWT issuer keys
(identity OIDC keys), ACL policies from ``policies/acl/``, Kubernetes and JWT
auth methods with their roles, audit devices with request headers, and the
static KV v2 secrets at their declared versions (CAS-guarded writes).
Exports identifiers only, never secret values. This file only wires.

With ``TRADEPULSE_ROTATION_ONLY`` set (by the tools that also pass the same
URNs as ``--target``), it registers only the rotated secrets when
:func:`kernel.targets.rotation_only_secrets` allows it, and the whole program
otherwise.
"""

import os

import pulumi

from infra import program
from infra.current_stack import load_current_stack
from kernel import paths
from kernel.targets import ROTATION_ONLY_ENV, rotation_only_secrets

spec = load_current_stack()
config = pulumi.Config(paths.PROJECT_NAME)
targets = os.environ.get(ROTATION_ONLY_ENV, "").split()
only = rotation_only_secrets(spec, pulumi.get_stack(), targets) if targets else None
if only is not None:
    pulumi.log.info(f"rotation-only program: {len(only)} of {len(spec.static_secrets)} static "
                    f"secret(s) registered for {len(targets)} --target URN(s)")
    static = program.build_rotation_only(spec, only, program.provided_secrets(spec, config),
                                         program.mirror_source(spec))
    program.export(spec, static)
else:
    deployment = program.build(
        spec,
        program.database_secrets(spec, config),
        program.provided_secrets(spec, config),
        program.mirror_source(spec),
        kubernetes_reviewer_jwt=program.kubernetes_reviewer_jwt(spec, config),
    )
    program.export(spec, deployment.static_secrets, deployment.audit.paths)
