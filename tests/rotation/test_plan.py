"""``plan``: rotations from a diff of the stack files, and everything else flagged."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rotation.cli import main

SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"
HMAC = "secret/services/analytics/warehouse-hmac"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def edit(root: Path, stack: str, old: str, new: str, count: int = 1) -> None:
    path = root / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, count))


def run_plan(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, Any]:
    code = main(["plan", "--json", "--repo", str(root), *extra])
    return code, json.loads(capsys.readouterr().out)


def test_bump_is_planned_with_cas_consumers_checks_and_dr_follow(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and plan["ok"] and plan["findings"] == []
    prod, dr = plan["rotations"]
    assert (prod["stack"], prod["secret"], prod["old_version"], prod["new_version"],
            prod["cas"]) == ("prod", SIGNING, 9, 10, 9)
    assert prod["consumers"] == ["execution"]
    assert prod["restarts"] == ["trading/Deployment/execution-connector"]
    assert any("verify --stack prod" in c for c in prod["checks"])
    assert (dr["stack"], dr["follows"], dr["new_version"]) == ("dr", "prod", 10)


def test_markdown_for_the_pull_request(stack_repo: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    text = capsys.readouterr().out
    row = ("| staging | `secret/services/analytics/warehouse-hmac` | 1 → 2 | 1 | analytics | "
           "analytics/Deployment/analytics-worker |")
    assert row in text


def test_committed_range_is_planned(stack_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    git(stack_repo, "commit", "-qam", "rotate")
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 0 and [r["secret"] for r in plan["rotations"]] == [SIGNING]
    code, plan = run_plan(capsys, stack_repo)  # working tree == HEAD: nothing
    assert plan["rotations"] == [] and plan["findings"] == []


def test_version_jump_is_an_error(stack_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(stack_repo, "prod", "        version: 9\n", "        version: 11\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1 and not plan["ok"]
    assert any("version moved 9 -> 11" in f["message"] for f in plan["findings"])


def test_version_decrement_is_an_error(stack_repo: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    edit(stack_repo, "prod", "        version: 9\n", "        version: 8\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1
    assert any("version moved 9 -> 8" in f["message"] for f in plan["findings"])


def test_other_changes_are_flagged_and_strict_fails(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    edit(stack_repo, "prod", "max_versions: 20", "max_versions: 30")
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0
    flagged = [f["message"] for f in plan["findings"]]
    assert flagged == ["not a rotation: config.tradepulse-vault:spec.kv_mounts[0].max_versions"]
    code, plan = run_plan(capsys, stack_repo, "--strict")
    assert code == 1 and not plan["ok"]


def test_provided_ciphertext_and_version_must_move_together(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "  tradepulse-vault:brokerApiCredentials:\n    secure: v1:AAAA\n"
    edit(stack_repo, "prod", "config:\n", "config:\n" + key)
    git(stack_repo, "commit", "-qam", "set ciphertext")
    edit(stack_repo, "prod", "secure: v1:AAAA", "secure: v1:BBBB")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1
    assert any("ciphertext of brokerApiCredentials changed without a version bump" in f["message"]
               for f in plan["findings"])
    edit(stack_repo, "prod", "secure: v1:BBBB", "secure: v1:AAAA")
    edit(stack_repo, "prod", "        version: 4\n", "        version: 5\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1
    assert any("ciphertext unchanged" in f["message"] for f in plan["findings"])
    edit(stack_repo, "prod", "secure: v1:AAAA", "secure: v1:CCCC")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and [r["secret"] for r in plan["rotations"]] == [BROKER]
    assert plan["findings"] == []


def test_invalid_stack_file_in_the_diff_fails(stack_repo: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    edit(stack_repo, "staging", "max_versions: 10", "max_versions: ten")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1
    assert "Pulumi.staging.yaml: tradepulse-vault:spec.kv_mounts[0].max_versions" in (
        plan["findings"][0]["message"])


def test_unknown_base_revision_is_bad_input(stack_repo: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--repo", str(stack_repo), "--base", "nope"]) == 2
    assert "unknown git revision 'nope'" in capsys.readouterr().err


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    _Hook.status = 200
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/ops"
    server.shutdown()


def test_announce_posts_the_summary_to_the_ops_webhook(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], webhook: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROTATION_ANNOUNCE_WEBHOOK", webhook)
    monkeypatch.setenv("ROTATION_SECURITY_LIAISON", "@sec-oncall")
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo, "--announce")
    assert code == 0
    assert _Hook.received == [{"text": f"Rotation window: prod {SIGNING} v9→v10; dr {SIGNING} "
                                       "v9→v10. cc @sec-oncall"}]
    assert plan["announced"] == _Hook.received[0]["text"]


def test_announce_failure_is_reported(stack_repo: Path, capsys: pytest.CaptureFixture[str],
                                      webhook: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATION_ANNOUNCE_WEBHOOK", webhook)
    _Hook.status = 500
    assert main(["plan", "--repo", str(stack_repo), "--announce"]) == 1
    assert "webhook answered HTTP 500" in capsys.readouterr().err
    monkeypatch.delenv("ROTATION_ANNOUNCE_WEBHOOK")
    assert main(["plan", "--repo", str(stack_repo), "--announce"]) == 2


def test_a_yaml_error_is_one_line_naming_the_file_and_line(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "local", "keys: [SIGNING_KEY]", "keys: [SIGNING_KEY")
    code, report = run_plan(capsys, stack_repo)
    assert code == 1
    [finding] = report["findings"]
    assert finding["severity"] == "error"
    assert "<unicode string>" not in finding["message"] and "\n" not in finding["message"]
    line = next(n for n, text in enumerate(
        (stack_repo / "Pulumi.local.yaml").read_text().splitlines(), start=1)
        if "keys: [SIGNING_KEY" in text)
    assert finding["message"].startswith(
        f"invalid stack file: Pulumi.local.yaml: line {line + 1}, column ")


# --- every credential class goes through the same bump -> plan -> gate path ---------------

CREDENTIALS = {
    "identity/oidc/key/tradepulse-adapters": (
        "jwt-key", "identity/oidc/key/tradepulse-adapters/rotate", []),
    "database/config/tradepulse-postgres": (
        "db-root", "database/rotate-root/tradepulse-postgres", []),
    "database/static-roles/execution-settlement": (
        "db-static-role", "database/rotate-role/execution-settlement", ["execution"]),
    "database/roles/tradepulse-execution": (
        "db-lease-generation", "sys/leases/revoke-prefix/database/creds/tradepulse-execution",
        ["execution"]),
}


def test_each_credential_kind_is_bumped_and_planned(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (stack_repo / "Pulumi.local.yaml").read_text()
    for credential_id in CREDENTIALS:
        assert main(["bump", "--stack", "local", credential_id, "--allow-dirty",
                     "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    after = (stack_repo / "Pulumi.local.yaml").read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True)
               if a != b]
    assert len(changed) == len(CREDENTIALS), "one line per bump, nothing else"
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and plan["ok"] and plan["findings"] == [], plan["findings"]
    got = {r["secret"]: r for r in plan["rotations"]}
    assert set(got) == set(CREDENTIALS)
    for credential_id, (kind, path, consumers) in CREDENTIALS.items():
        rotation = got[credential_id]
        assert (rotation["kind"], rotation["data_path"], rotation["old_version"],
                rotation["new_version"], rotation["cas"]) == (kind, path, 1, 2, None)
        assert rotation["consumers"] == consumers
        assert rotation["apply"] and path in rotation["apply"]
        assert any(f"--secret {credential_id}" in c for c in rotation["checks"])
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    markdown = capsys.readouterr().out
    for credential_id, (kind, _, _) in CREDENTIALS.items():
        assert f"| local | {kind} | `{credential_id}` | 1 → 2 |" in markdown


@pytest.mark.parametrize(("old", "new", "message"), [
    ("root_rotation: 1", "root_rotation: 3",
     "database/config/tradepulse-postgres: root_rotation moved 1 -> 3"),
    ("version: 1 # bump: rotate-role at apply", "version: 5",
     "database/static-roles/execution-settlement: version moved 1 -> 5"),
])
def test_a_credential_version_that_moves_by_more_than_one_fails_the_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    edit(stack_repo, "local", old, new)
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1 and not plan["ok"]
    assert any(message in f["message"] and f["severity"] == "error" for f in plan["findings"])


def test_bumping_a_credential_with_a_value_is_refused(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEW_VALUE", "CANARY-never-a-value")
    before = (stack_repo / "Pulumi.local.yaml").read_bytes()
    code = main(["bump", "--stack", "local", "database/config/tradepulse-postgres",
                 "--value-env", "NEW_VALUE", "--repo", str(stack_repo)])
    captured = capsys.readouterr()
    assert code == 2 and "takes no value" in captured.err
    assert "CANARY-never-a-value" not in captured.out + captured.err
    assert (stack_repo / "Pulumi.local.yaml").read_bytes() == before
