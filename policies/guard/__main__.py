"""tradepulse-vault-guard: the CrossGuard policy pack every preview and apply runs.

    pulumi preview --diff --stack prod --policy-pack policies/guard

Rules (all mandatory; see ``tradepulse_guard/`` and docs/gates.md):
kv-v2-cas-and-version-floor, kv-v2-mounts-have-cas-config,
prod-dr-two-audit-devices, database-role-ttl-under-cap,
auth-role-token-ttl-under-cap, acl-no-sudo-or-sys-wildcard,
kv-secret-data-is-secret, dr-has-everything-prod-has.

The pack reads the stack's ``tradepulse-vault:spec`` from the stack config the
engine passes it (tradepulse_guard/facts.py says how it arrives) and imports
the repository's own ``infra`` (spec loader, HCL parser) and ``rotation.gates``
(dr comparison), so the pack and the program judge the same data the same
way. It never prints a secret value.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# The rules package sits beside this file; the repository root holds infra/ and rotation/.
for _path in (_HERE, _HERE.parent.parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402
from tradepulse_guard import PACK_NAME, POLICIES  # noqa: E402
from tradepulse_guard.facts import install_stack_config_hook  # noqa: E402

if __name__ == "__main__":
    install_stack_config_hook()
    PolicyPack(
        name=PACK_NAME,
        enforcement_level=EnforcementLevel.MANDATORY,
        policies=POLICIES,
        description="tradepulse-vault: CAS and audit devices in prod/dr, TTL caps, no sudo "
                    "outside break-glass, secret KV data, dr parity with prod.",
    )
