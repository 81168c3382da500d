"""Prod and dr declare at least two audit devices, so one failing device cannot block Vault.

Vault refuses requests when no audit device can log them, so a single device
is a single point of failure. How the devices are counted depends on the
flavour (the spec's ``vault.flavour``):

* ``vault``: the ``vault.Audit`` resources in the stack, which is what the
  apply will create;
* ``openbao``: OpenBao refuses API-created devices, so the program renders
  them into server config and its ``tradepulse:vault:AuditDevices`` component
  *verifies* through ``sys/audit`` that each declared device is enabled,
  failing the preview otherwise. The rule therefore counts the spec's declared
  devices and requires that component in the stack (no verification, no pass).
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, StackValidationArgs, StackValidationPolicy

from kernel.rules import MIN_AUDIT_DEVICES
from kernel.spec import EnvironmentSpec
from tradepulse_guard.facts import (
    AUDIT,
    AUDIT_COMPONENT,
    ReportViolation,
    resolve_spec,
)


def prod_and_dr_have_two_audit_devices(
    args: StackValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None,
) -> None:
    """At least two audit devices in strict stacks (counted per flavour, see the module)."""
    spec = resolve_spec(spec, report_violation)
    if spec is None or not spec.strict:
        return
    env = spec.environment
    if spec.vault.flavour == "vault":
        devices = sorted(str(r.props.get("path")) for r in args.resources
                         if r.resource_type == AUDIT)
        if len(devices) < MIN_AUDIT_DEVICES:
            report_violation(f"{env} creates {len(devices)} vault.Audit device(s) "
                             f"({', '.join(devices) or 'none'}); it needs at least "
                             f"{MIN_AUDIT_DEVICES} so one failing device cannot block Vault")
        return
    if not any(r.resource_type == AUDIT_COMPONENT for r in args.resources):
        report_violation(f"{env} (openbao) has no {AUDIT_COMPONENT} component, so nothing "
                         "verifies that the server has its audit devices")
    declared = [d.path for d in spec.audit.devices]
    if len(declared) < MIN_AUDIT_DEVICES:
        report_violation(f"{env} (openbao) declares {len(declared)} audit device(s) "
                         f"({', '.join(declared)}); it needs at least {MIN_AUDIT_DEVICES}")


POLICIES = [
    StackValidationPolicy(
        name="prod-dr-two-audit-devices",
        description=f"Prod and dr declare at least {MIN_AUDIT_DEVICES} audit devices.",
        validate=prod_and_dr_have_two_audit_devices,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
