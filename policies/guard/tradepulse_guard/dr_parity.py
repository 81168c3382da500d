"""The dr stack has every mount, policy and role prod has, and mirrors what prod publishes.

A policy pack sees one stack at a time, so when the dr stack is previewed this
rule compares its spec (stack config) with ``Pulumi.prod.yaml`` in the same
checkout, using the same comparison as the offline gate
(:mod:`kernel.dr`): KV and database mounts, ACL policies, database,
Kubernetes and JWT roles (JWT role names carry the environment), auth methods
and audit devices, plus the mirror entries. On other stacks it does nothing.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, StackValidationArgs, StackValidationPolicy

from kernel.dr import mirror_problems, parity_problems
from kernel.spec import EnvironmentSpec
from tradepulse_guard.facts import (
    ReportViolation,
    SpecUnavailableError,
    prod_spec,
    resolve_spec,
)

DR_ENVIRONMENT = "dr"


def dr_has_everything_prod_has(
    args: StackValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None, prod: EnvironmentSpec | None = None,
) -> None:
    """In dr: every prod mount, policy, role, auth method and audit device, and the mirrors."""
    spec = resolve_spec(spec, report_violation)
    if spec is None or spec.environment != DR_ENVIRONMENT:
        return
    if prod is None:
        try:
            prod = prod_spec()
        except SpecUnavailableError as exc:
            report_violation(f"cannot compare with prod: {exc}")
            return
    for problem in parity_problems(prod, spec) + mirror_problems(prod, spec):
        report_violation(problem)


POLICIES = [
    StackValidationPolicy(
        name="dr-has-everything-prod-has",
        description="The dr stack has every mount, policy and role of prod and mirrors the "
                    "secrets prod publishes.",
        validate=dr_has_everything_prod_has,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
