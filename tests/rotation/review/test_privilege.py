"""The capability diff per principal, computed on a real (throwaway) OpenBao by the plan itself.

Each test edits a ``stack_repo`` copy the way a pull request would - a policy bound to a
service, a policy file loosened, the capability matrix weakened - and reads what
``plan --json`` says each principal gains and loses, as ``sys/capabilities`` answered it.
Nothing is mocked: the plan starts ``bao server -dev`` from the venv on loopback.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main

pytestmark = pytest.mark.integration

HMAC = "secret/services/analytics/warehouse-hmac"
FEED = "secret/data/services/ingestion/market-data-feed"


def edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text()
    assert old in text, f"{name} has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def plan(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, Any]:
    code = main(["plan", "--json", "--repo", str(root), *extra])
    return code, json.loads(capsys.readouterr().out)


def principal(report: Any, stack: str, kind: str, name: str) -> Any:
    found = [p for p in report["privilege"]["principals"]
             if (p["stack"], p["kind"], p["name"]) == (stack, kind, name)]
    assert found, [(p["stack"], p["kind"], p["name"]) for p in report["privilege"]["principals"]]
    return found[0]


def test_a_policy_bound_to_a_prod_service_shows_its_gains_and_needs_acknowledging(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.prod.yaml", "        policies: [tradepulse-execution]\n",
         "        policies: [tradepulse-execution, rotation-operator]\n")
    code, report = plan(capsys, stack_repo)
    assert code == 1
    execution = principal(report, "prod", "service", "execution")
    assert execution["old_policies"] == ["tradepulse-execution"]
    assert execution["new_policies"] == ["rotation-operator", "tradepulse-execution"]
    assert execution["gained"][FEED] == ["create", "read", "update"]
    assert execution["gained"]["auth/token/create"] == ["update"]
    assert execution["lost"] == {}
    assert report["privilege"]["engine"] and report["privilege"]["tokens"] >= 2
    [binding] = [c for c in report["changes"] if c["field"] == "policies"]
    assert (binding["kind"], binding["subject"], binding["old"], binding["new"]) == (
        "privilege", "service execution", "[tradepulse-execution]",
        "[tradepulse-execution, rotation-operator]")
    [finding] = report["findings"]
    assert finding["message"].startswith("service execution gains ")
    assert "needs the label acknowledge:privilege" in finding["message"]
    assert main(["gate", "--json", "--repo", str(stack_repo)]) == 1
    gate = json.loads(capsys.readouterr().out)
    assert gate["failed"] == ["rotation-plan"]
    code, report = plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 0 and report["ok"]
    assert main(["gate", "--json", "--repo", str(stack_repo), "--acknowledge", "privilege"]) == 0
    capsys.readouterr()
    assert main(["plan", "--repo", str(stack_repo), "--acknowledge", "privilege"]) == 0
    markdown = capsys.readouterr().out
    assert ("- `prod` (strict) service execution (policies tradepulse-execution → "
            "rotation-operator, tradepulse-execution):") in markdown
    assert "  - gains update on `auth/token/create`" in markdown  # the first 12 paths, sorted


def test_the_same_binding_in_a_non_strict_stack_is_shown_and_passes(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.staging.yaml", "        policies: [tradepulse-execution]\n",
         "        policies: [tradepulse-execution, rotation-operator]\n")
    code, report = plan(capsys, stack_repo)
    assert code == 0, report["findings"]
    assert principal(report, "staging", "service", "execution")["gained"][FEED] == [
        "create", "read", "update"]


@pytest.mark.parametrize(("old", "new", "path", "caps"), [
    ('path "secret/data/services/analytics/*" {\n  capabilities = ["read"]',
     'path "secret/data/services/analytics/*" {\n  capabilities = ["read", "sudo"]',
     f"secret/data/{HMAC.split('/', 1)[1]}", ["sudo"]),
    ('path "secret/data/services/analytics/*" {', 'path "secret/data/*" {',
     "secret/data/services/execution/broker-api", ["read"]),
    ('path "database/creds/tradepulse-analytics" {', 'path "sys/*" {', "sys/audit",
     ["read"]),
], ids=["sudo", "wider-path", "sys"])
def test_a_loosened_policy_file_shows_every_principal_that_holds_it(  # noqa: PLR0917
    stack_repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, path: str,
    caps: list[str],
) -> None:
    edit(stack_repo, "policies/acl/tradepulse-analytics.hcl", old, new)
    code, report = plan(capsys, stack_repo)
    assert code == 1
    for stack in ("prod", "dr", "staging"):
        gained = principal(report, stack, "service", "analytics")["gained"]
        assert gained.get(path) == caps, (stack, gained)
    assert any(f["stack"] == "prod" and "service analytics gains" in f["message"]
               for f in report["findings"])
    assert [c["subject"] for c in report["changes"]] == ["policy file tradepulse-analytics.hcl"]
    code, report = plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 0, report["findings"]


def test_a_rotation_that_also_edits_a_policy_file_is_not_a_rotation_pull_request(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    edit(stack_repo, "policies/acl/tradepulse-analytics.hcl",
         'path "secret/data/services/analytics/*" {', 'path "secret/data/*" {')
    capsys.readouterr()
    code, report = plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 1
    assert any("a rotation pull request changes only secret versions" in f["message"]
               for f in report["findings"])


def test_weakening_the_capability_matrix_needs_acknowledging(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "policies/acl/expectations.yaml",
         "      - {path: secret/data/services/analytics/warehouse-hmac, why: another service's "
         "secret}\n", "")
    code, report = plan(capsys, stack_repo)
    assert code == 1
    [change] = report["changes"]
    assert (change["kind"], change["subject"], change["old"], change["new"]) == (
        "weakening", "capability matrix: tradepulse-execution", "8 allow, 14 deny",
        "8 allow, 13 deny")
    code, report = plan(capsys, stack_repo, "--acknowledge", "weakening")
    assert code == 0, report["findings"]


def test_a_new_policy_with_its_expectations_in_a_non_strict_stack_passes(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (stack_repo / "policies/acl/reporting.hcl").write_text(
        '# reporting: reads the reporting subtree\n'
        'path "secret/data/services/reporting/*" {\n  capabilities = ["read"]\n}\n')
    edit(stack_repo, "policies/acl/expectations.yaml", "\n  break-glass:\n",
         "\n  reporting:\n    description: reads the reporting subtree\n    allow:\n"
         "      - {path: secret/data/services/reporting/daily, capabilities: [read]}\n"
         "    deny:\n      - {path: secret/data/services/execution/broker-api}\n"
         "\n  break-glass:\n")
    edit(stack_repo, "Pulumi.staging.yaml", "      - ci-preview\n",
         "      - ci-preview\n      - reporting\n")
    subprocess.run(["git", "-C", str(stack_repo), "add", "-A"], check=True)
    code, report = plan(capsys, stack_repo)
    assert code == 0, report["findings"]
    reporting = principal(report, "staging", "policy", "reporting")
    assert reporting["gained"]["secret/data/services/reporting/daily"] == ["read"]
    kinds = sorted((c["kind"], c["subject"]) for c in report["changes"])
    assert kinds == [("configuration", "capability matrix: reporting"),
                     ("privilege", "policy file reporting.hcl"),
                     ("privilege", "policy reporting")]
    assert main(["gate", "--json", "--repo", str(stack_repo)]) == 0, capsys.readouterr().out
    capsys.readouterr()


def test_no_policy_or_binding_change_starts_no_engine(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.staging.yaml", "max_versions: 10", "max_versions: 12")
    code, report = plan(capsys, stack_repo)
    assert code == 0
    assert report["privilege"]["engine"] is None
    assert report["privilege"]["note"].startswith("no policy file and no policy binding changed")


def _bao_children() -> list[int]:
    """Child processes of this test process that are ``bao`` (from /proc)."""
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = (Path("/proc") / entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if name == "bao" and ppid == os.getpid():
            found.append(int(entry))
    return found


def test_the_engine_ignores_the_callers_vault_and_is_gone_afterwards(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(_bao_children())  # servers of session fixtures (a raft cluster) stay
    canary = "hvs." + secrets.token_urlsafe(24)  # made here: no token in the file
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")  # nothing listens: never used
    monkeypatch.setenv("VAULT_TOKEN", canary)
    monkeypatch.setenv("BAO_TOKEN", canary)
    edit(stack_repo, "policies/acl/auditor.hcl", 'path "sys/auth" {', 'path "sys/auth/*" {')
    code, report = plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 0, report["findings"]
    assert report["privilege"]["engine"] and report["privilege"]["errors"] == []
    assert principal(report, "prod", "policy", "auditor")["gained"]["sys/auth/kubernetes"] == [
        "read"]
    assert canary not in json.dumps(report)
    assert set(_bao_children()) - before == set()


def test_a_comment_edit_in_a_policy_file_changes_no_capability_and_passes(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "policies/acl/tradepulse-execution.hcl", "# Least privilege:",
         "# Least privilege (reviewed 2026-12):")
    code, report = plan(capsys, stack_repo)
    assert code == 0, report["findings"]
    assert report["privilege"]["engine"] and report["privilege"]["principals"] == []
    assert [(c["kind"], c["subject"], c["gain"]) for c in report["changes"]] == [
        ("privilege", "policy file tradepulse-execution.hcl", False)]
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    assert "No principal gains or loses a capability." in capsys.readouterr().out
