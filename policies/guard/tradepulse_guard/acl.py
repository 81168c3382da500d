"""No ACL policy grants ``sudo`` or a wildcard over ``sys/`` unless it is break-glass.

The ``policy`` input of every ``vault.Policy`` is parsed with the repository's
HCL parser (:func:`kernel.policy_files.parse_policy`). A rule is a wildcard
over ``sys/`` when its path is a glob (``*`` or ``+``) whose literal text
before the first glob character is a prefix of ``sys/``: ``*``, ``s*``,
``sys*``, ``sys/*``, ``sys/+/...`` and ``+/...`` all reach every ``sys/``
endpoint, while ``sys/policies/acl/*`` does not. A ``deny``-only rule grants
nothing and is allowed. The capability matrix test proves each policy's
effective grants on a real engine; this rule stops the broad grants at preview.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from kernel.policy_files import PolicyParseError, parse_policy
from tradepulse_guard.facts import ACL_POLICY, BREAK_GLASS_POLICY, ReportViolation

_GLOB_CHARS = ("*", "+")


def is_sys_wildcard(path: str) -> bool:
    """Return whether the ACL path glob ``path`` reaches every endpoint under ``sys/``."""
    cut = min((path.index(c) for c in _GLOB_CHARS if c in path), default=-1)
    if cut < 0:
        return False
    return "sys/".startswith(path[:cut])


def acl_no_sudo_or_sys_wildcard(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """Only break-glass may hold ``sudo`` or grant anything on a ``sys/`` wildcard."""
    if args.resource_type != ACL_POLICY:
        return
    name = str(args.props.get("name") or args.name)
    if name == BREAK_GLASS_POLICY:
        return
    try:
        rules = parse_policy(str(args.props.get("policy") or ""), f"policy {name}")
    except PolicyParseError as exc:
        report_violation(f"{exc}; an unreadable policy cannot be reviewed")
        return
    for path, caps in sorted(rules.items()):
        granted = sorted(caps - {"deny"}) if "deny" not in caps else []
        if "sudo" in granted:
            report_violation(f"policy {name}: path {path!r} grants sudo; only "
                             f"{BREAK_GLASS_POLICY} may")
        if granted and is_sys_wildcard(path):
            report_violation(f"policy {name}: path {path!r} is a wildcard over sys/ granting "
                             f"{', '.join(granted)}; only {BREAK_GLASS_POLICY} may")


POLICIES = [
    ResourceValidationPolicy(
        name="acl-no-sudo-or-sys-wildcard",
        description=f"No ACL policy but {BREAK_GLASS_POLICY} grants sudo or a wildcard over "
                    "sys/.",
        validate=acl_no_sudo_or_sys_wildcard,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
