"""tradepulse_guard.dr_parity: dr has everything prod has.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

from pulumi_policy import (
    StackValidationArgs,
)
from tradepulse_guard import (
    dr_parity,
)

from tests.guard.support import (
    Violations,
    spec,
)

# --- dr-has-everything-prod-has ----------------------------------------------------------


def test_dr_with_everything_prod_has_passes() -> None:
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, spec("dr"),
                                         spec("prod"))
    assert seen == []


def test_dr_missing_a_policy_role_or_mirror_fails() -> None:
    dr = spec("dr")
    assert dr.database is not None
    broken = dr.model_copy(update={
        "policies": tuple(p for p in dr.policies if p != "break-glass"),
        "database": dr.database.model_copy(update={"roles": dr.database.roles[:2]}),
        "static_secrets": tuple(s for s in dr.static_secrets if s.mirror_of is None)})
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, broken, spec("prod"))
    assert seen.messages == [
        "Pulumi.dr.yaml: lacks prod's ACL policy 'break-glass'",
        "Pulumi.dr.yaml: lacks prod's database role 'tradepulse-analytics'",
        "Pulumi.prod.yaml: secret/services/execution/session-signing-key is published to dr "
        "(mirror_to_dr) but Pulumi.dr.yaml does not mirror it: dr is behind prod",
        "Pulumi.prod.yaml: secret/services/ingestion/market-data-feed is published to dr "
        "(mirror_to_dr) but Pulumi.dr.yaml does not mirror it: dr is behind prod"]


def test_dr_parity_holds_only_the_dr_stack() -> None:
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, spec("staging"),
                                         spec("prod"))
    assert seen == []
