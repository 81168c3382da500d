"""Every ACL policy file parses as HCL and follows the least-privilege layout."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kernel import paths
from kernel.policy_files import PolicyParseError, parse_policy, read_policy
from kernel.spec import load_stack_file
from tests.conftest import STACKS

POLICY_FILES = sorted(paths.POLICY_DIR.glob("*.hcl"))


def test_policy_directory_is_not_empty() -> None:
    assert {p.stem for p in POLICY_FILES} == {
        "tradepulse-execution", "tradepulse-ingestion", "tradepulse-analytics",
        "rotation-operator", "auditor", "ci-preview", "ci-due", "break-glass"}


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_parses_with_an_hcl_parser(path: Path) -> None:
    rules = parse_policy(path.read_text(), path.name)
    assert rules, path.name
    assert all(caps for caps in rules.values())


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_only_break_glass_has_sudo_or_a_catch_all(path: Path) -> None:
    rules = parse_policy(path.read_text(), path.name)
    sudo_paths = [p for p, caps in rules.items() if "sudo" in caps]
    if path.stem == "break-glass":
        assert sudo_paths == ["*"]
    else:
        assert sudo_paths == [], f"{path.name} grants sudo on {sudo_paths}"
        assert "*" not in rules and not any(p.startswith("sys/*") for p in rules)


@pytest.mark.parametrize("service", ["execution", "ingestion", "analytics"])
def test_service_policy_reads_only_its_own_subtree(service: str) -> None:
    rules = parse_policy(read_policy(f"tradepulse-{service}"), service)
    secret_paths = {p for p in rules if p.startswith("secret/")}
    assert secret_paths == {f"secret/data/services/{service}",
                            f"secret/data/services/{service}/*"}
    assert all(rules[p] == {"read"} for p in secret_paths)
    assert rules[f"database/creds/tradepulse-{service}"] == {"read"}


def test_ci_due_reads_only_metadata_and_static_roles() -> None:
    # bump --due schedules from when things last rotated; the pull request it opens rotates.
    rules = parse_policy(read_policy("ci-due"), "ci-due")
    assert rules == {"secret/metadata/services/*": {"read"},
                     "database/static-roles/*": {"read"}}


def test_every_policy_file_is_used_by_some_stack() -> None:
    used = {name for stack in STACKS
            for name in load_stack_file(paths.stack_file(stack)).policies}
    assert used == {p.stem for p in POLICY_FILES}


def test_break_glass_only_in_prod_and_dr() -> None:
    has = {stack: "break-glass" in load_stack_file(paths.stack_file(stack)).policies
           for stack in STACKS}
    assert has == {"prod": True, "dr": True, "staging": False, "local": False}


@pytest.mark.parametrize(("text", "fragment"), [
    ('path "secret/*" {\n  capabilities = ["read"\n', "not valid HCL"),
    ('path "secret/*" {\n  capabilities = ["reed"]\n}\n', "unknown capabilities ['reed']"),
    ('path "secret/*" {\n  policy = "read"\n}\n', "has no capabilities list"),
    ('name = "x"\n', "unexpected top-level blocks"),
    ("", "declares no path rules"),
])
def test_malformed_policy_is_refused_with_the_file_name(text: str, fragment: str) -> None:
    with pytest.raises(PolicyParseError) as info:
        parse_policy(text, "broken.hcl")
    assert str(info.value).startswith("broken.hcl: ")
    assert fragment in str(info.value)


def test_a_secret_pasted_into_a_policy_is_not_repeated() -> None:
    canary = secrets.token_urlsafe(30)
    for text in (f'path "x" {{\n  capabilities = ["{canary}"]\n}}\n', f"{canary} = 1\n",
                 f'path "{canary}" {{\n}}\n', f'path "x" {{\n  capabilities = [{canary}\n'):
        with pytest.raises(PolicyParseError) as caught:
            parse_policy(text, "leak.hcl")
        assert canary not in str(caught.value) and "leak.hcl: " in str(caught.value)
