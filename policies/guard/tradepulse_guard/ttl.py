"""Lease and token lifetimes stay under the environment's caps (the spec's ``limits``).

The caps are the spec's ``limits.max_database_ttl_seconds`` and
``limits.max_token_ttl_seconds``, read from the stack config (see
:mod:`tradepulse_guard.facts`): the loader already refuses a spec that breaks
them, and this pack catches a resource the spec did not produce (a hand-added
role, a component bug). A TTL of 0 means "Vault's default" (32 days), so a
missing max TTL is a violation, and so is a periodic token (it never expires).
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from kernel.spec import EnvironmentSpec
from tradepulse_guard.facts import (
    AUTH_ROLES,
    DATABASE_ROLE,
    ReportViolation,
    as_int,
    resolve_spec,
)


def _check_pair(  # noqa: PLR0917 - private helper, called with keywords-in-order
    name: str, ttl: object, max_ttl: object, cap: int, cap_name: str,
    report_violation: ReportViolation, labels: tuple[str, str],
) -> None:
    ttl_label, max_label = labels
    top = as_int(max_ttl)
    if top is None or top <= 0:
        report_violation(f"{name}: {max_label} is not set (0 is Vault's 32-day default); set it "
                         f"at most {cap} s ({cap_name})")
        return
    if top > cap:
        report_violation(f"{name}: {max_label} {top} s exceeds {cap_name} ({cap} s)")
    low = as_int(ttl)
    if low is not None and low > top:
        report_violation(f"{name}: {ttl_label} {low} s exceeds {max_label} {top} s")


def database_role_ttl_under_cap(
    args: ResourceValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None,
) -> None:
    """Database roles: ``0 < max_ttl <= limits.max_database_ttl_seconds``, default <= max."""
    if args.resource_type != DATABASE_ROLE:
        return
    spec = resolve_spec(spec, report_violation)
    if spec is None:
        return
    _check_pair(args.name, args.props.get("defaultTtl"), args.props.get("maxTtl"),
                spec.limits.max_database_ttl_seconds, "limits.max_database_ttl_seconds",
                report_violation, ("default_ttl", "max_ttl"))


def auth_role_token_ttl_under_cap(
    args: ResourceValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None,
) -> None:
    """Auth roles: ``0 < token_max_ttl <= limits.max_token_ttl_seconds``, no periodic tokens."""
    if args.resource_type not in AUTH_ROLES:
        return
    spec = resolve_spec(spec, report_violation)
    if spec is None:
        return
    cap = spec.limits.max_token_ttl_seconds
    _check_pair(args.name, args.props.get("tokenTtl"), args.props.get("tokenMaxTtl"), cap,
                "limits.max_token_ttl_seconds", report_violation,
                ("token_ttl", "token_max_ttl"))
    explicit = as_int(args.props.get("tokenExplicitMaxTtl"))
    if explicit is not None and explicit > cap:
        report_violation(f"{args.name}: token_explicit_max_ttl {explicit} s exceeds "
                         f"limits.max_token_ttl_seconds ({cap} s)")
    period = as_int(args.props.get("tokenPeriod"))
    if period:
        report_violation(f"{args.name}: token_period {period} s makes periodic tokens, which "
                         "renew forever past every cap")


POLICIES = [
    ResourceValidationPolicy(
        name="database-role-ttl-under-cap",
        description="Database roles' max_ttl is set and under the spec's "
                    "limits.max_database_ttl_seconds.",
        validate=database_role_ttl_under_cap,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="auth-role-token-ttl-under-cap",
        description="Auth roles' token_max_ttl is set and under the spec's "
                    "limits.max_token_ttl_seconds; no periodic tokens.",
        validate=auth_role_token_ttl_under_cap,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
