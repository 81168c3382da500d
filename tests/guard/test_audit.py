"""tradepulse_guard.audit: strict stacks declare at least two audit devices.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

from pulumi_policy import (
    StackValidationArgs,
)
from tradepulse_guard import (
    audit,
    facts,
)

from tests.guard.support import (
    Violations,
    audit_device,
    spec,
    stack_resource,
)

# --- prod-dr-two-audit-devices -----------------------------------------------------------


def test_two_vault_audit_devices_pass() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary"), audit_device("syslog-secondary",
                                                                        "syslog")]),
        seen, spec("prod"))
    assert seen == []


def test_one_vault_audit_device_fails() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary")]), seen, spec("dr"))
    assert seen.messages == ["dr creates 1 vault.Audit device(s) (file-primary); it needs at "
                             "least 2 so one failing device cannot block Vault"]


def test_openbao_audit_devices_count_the_spec_and_need_the_verifier() -> None:
    local = spec("local")  # the openbao flavour, one declared device
    as_prod = local.model_copy(update={"environment": "prod", "strict": True})
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(StackValidationArgs([]), seen, as_prod)
    assert seen.messages == [
        "prod (openbao) has no tradepulse:vault:AuditDevices component, so nothing verifies "
        "that the server has its audit devices",
        "prod (openbao) declares 1 audit device(s) (file-local); it needs at least 2"]
    two = as_prod.model_copy(update={"audit": local.audit.model_copy(
        update={"devices": spec("prod").audit.devices})})
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([stack_resource(facts.AUDIT_COMPONENT, "audit", {})]), seen, two)
    assert seen == []


def test_staging_may_have_one_audit_device() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary")]), seen, spec("staging"))
    assert seen == []
