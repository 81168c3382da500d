"""tradepulse_guard.acl: no sudo and no sys/ wildcard outside break-glass.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

import pytest
from pulumi_policy import (
    ResourceValidationArgs,
)
from tradepulse_guard import (
    acl,
    facts,
)

from kernel import paths
from kernel.policy_files import read_policy
from tests.guard.support import (
    Violations,
    resource,
)

# --- acl-no-sudo-or-sys-wildcard ---------------------------------------------------------


def acl_policy(name: str, hcl: str) -> ResourceValidationArgs:
    return resource(facts.ACL_POLICY, f"policy-{name}", {"name": name, "policy": hcl})


@pytest.mark.parametrize("name", sorted(p.stem for p in paths.POLICY_DIR.glob("*.hcl")))
def test_every_repository_policy_passes(name: str) -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(acl_policy(name, read_policy(name)), seen)
    assert seen == []


@pytest.mark.parametrize(("hcl", "expected"), [
    ('path "secret/data/*" {\n  capabilities = ["read", "sudo"]\n}\n',
     ["policy auditor: path 'secret/data/*' grants sudo; only break-glass may"]),
    ('path "sys/*" {\n  capabilities = ["read"]\n}\n',
     ["policy auditor: path 'sys/*' is a wildcard over sys/ granting read; only break-glass "
      "may"]),
    ('path "*" {\n  capabilities = ["list"]\n}\n',
     ["policy auditor: path '*' is a wildcard over sys/ granting list; only break-glass may"]),
    ('path "+/mounts" {\n  capabilities = ["read"]\n}\n',
     ["policy auditor: path '+/mounts' is a wildcard over sys/ granting read; only "
      "break-glass may"]),
    ('path "sys/audit" {\n  capabilities = ["sudo", "read"]\n}\n',
     ["policy auditor: path 'sys/audit' grants sudo; only break-glass may"]),
    ('path "sys/mounts" {\n  capabilities = ["teleport"]\n}\n',
     ["policy auditor: path \"sys/mounts\" has unknown capabilities ['teleport']; an "
      "unreadable policy cannot be reviewed"]),
])
def test_sudo_or_a_sys_wildcard_fails(hcl: str, expected: list[str]) -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(acl_policy("auditor", hcl), seen)
    assert seen.messages == expected


def test_break_glass_is_exempt_and_deny_rules_grant_nothing() -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(
        acl_policy("break-glass", 'path "*" {\n  capabilities = ["read", "sudo"]\n}\n'), seen)
    acl.acl_no_sudo_or_sys_wildcard(
        acl_policy("auditor", 'path "sys/*" {\n  capabilities = ["deny"]\n}\n'), seen)
    assert seen == []


@pytest.mark.parametrize(("path", "wild"), [
    ("*", True), ("s*", True), ("sys*", True), ("sys/*", True), ("sys/+/tune", True),
    ("+/*", True), ("sys/policies/acl/*", False), ("sys/mounts", False),
    ("secret/*", False), ("sysadmin/*", False), ("auth/+/role/*", False),
])
def test_what_counts_as_a_sys_wildcard(path: str, wild: bool) -> None:
    assert acl.is_sys_wildcard(path) is wild
