"""tradepulse-vault: the Vault configuration of one environment (the current stack).

Deploys, from the ``tradepulse-vault:spec`` key of ``Pulumi.<stack>.yaml``:
KV v2 engines, the database secrets engine and its roles, JWT issuer keys
(identity OIDC keys), ACL policies from ``policies/acl/``, Kubernetes and JWT
auth methods with their roles, audit devices with request headers, and the
static KV v2 secrets at their declared versions (CAS-guarded writes).
Exports identifiers only, never secret values. This file only wires.
"""

import pulumi

from infra import program
from infra.current_stack import load_current_stack
from kernel import paths

spec = load_current_stack()
config = pulumi.Config(paths.PROJECT_NAME)
deployment = program.build(
    spec,
    program.database_secrets(spec, config),
    program.provided_secrets(spec, config),
    program.mirror_source(spec),
    kubernetes_reviewer_jwt=program.kubernetes_reviewer_jwt(spec, config),
)
program.export(spec, deployment)
