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

from kernel.targets import mirror_urns, secret_v2_urn
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
    # What a targeted apply names (kernel.targets): the write, and for dr prod's reference.
    mount, path = SIGNING.split("/", 1)
    assert prod["resources"][-1] == secret_v2_urn("prod", mount, path)
    assert dr["resources"] == mirror_urns("dr", mount, path)
    # How each stack applies them: prod's generated secret by the rotation-only program,
    # dr's mirror by the whole program (its StackReference has every mirror as dependent).
    assert plan["targeted_apply"] == {
        "prod": {"targets": sorted(prod["resources"]), "rotation_only": True},
        "dr": {"targets": sorted(dr["resources"]), "rotation_only": False},
    }


def test_a_credential_that_is_not_a_kv_secret_is_applied_by_the_whole_program(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "local", HMAC, "--repo", str(stack_repo)]) == 0
    assert main(["bump", "--stack", "local", "identity/oidc/key/tradepulse-adapters",
                 "--repo", str(stack_repo), "--allow-dirty"]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    local = plan["targeted_apply"]["local"]
    assert local["rotation_only"] is False
    assert local["targets"] == sorted({u for r in plan["rotations"] if r["stack"] == "local"
                                      for u in r["resources"]})
    assert any("Endpoint" in u for u in local["targets"])


def test_markdown_for_the_pull_request(stack_repo: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    text = capsys.readouterr().out
    row = ("| staging | `secret/services/analytics/warehouse-hmac` | 1 → 2 | 1 | analytics | "
           "analytics/Deployment/analytics-worker |")
    assert row in text


def test_two_bumps_in_one_pull_request_are_two_rotations(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    assert main(["bump", "--stack", "prod", HMAC, "--repo", str(stack_repo), "--allow-dirty"]) \
        == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and plan["findings"] == [] and plan["changes"] == []
    assert sorted((r["stack"], r["new_version"]) for r in plan["rotations"]) == [
        ("prod", 3), ("staging", 2)]


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


def test_other_changes_are_classified_and_strict_fails(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "staging", "max_versions: 10", "max_versions: 12")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and plan["findings"] == []
    [change] = plan["changes"]
    assert (change["kind"], change["stack"], change["subject"], change["field"], change["old"],
            change["new"]) == ("configuration", "staging", "KV mount secret", "max_versions",
                               "10", "12")
    code, plan = run_plan(capsys, stack_repo, "--strict")
    assert code == 1 and not plan["ok"]


def test_a_rotation_mixed_with_another_change_fails(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    edit(stack_repo, "prod", "max_versions: 20", "max_versions: 30")
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1 and not plan["ok"]
    [finding] = plan["findings"]
    assert finding["message"].startswith(
        f"this diff rotates secrets in prod {SIGNING} and also makes 1 other change(s) "
        "(configuration): a rotation pull request changes only secret versions")
    code, plan = run_plan(capsys, stack_repo, "--acknowledge", "privilege,weakening,destructive")
    assert code == 1, "no acknowledgement makes a mixed pull request pure"


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
# --- the diff a pull request makes (three-dot) ------------------------------------------


def test_a_branch_is_planned_from_its_merge_base_while_main_moves_on(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(stack_repo, "checkout", "-qb", "rotate-signing")
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    git(stack_repo, "commit", "-qam", "rotate the session signing key")
    git(stack_repo, "checkout", "-q", "main")
    assert main(["bump", "--stack", "prod", HMAC, "--repo", str(stack_repo)]) == 0
    git(stack_repo, "commit", "-qam", "main meanwhile rotates warehouse-hmac")
    git(stack_repo, "checkout", "-q", "rotate-signing")
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo, "--base", "main", "--head", "rotate-signing")
    assert code == 0, plan["findings"]
    assert [(r["stack"], r["secret"]) for r in plan["rotations"]] == [("prod", SIGNING),
                                                                    ("dr", SIGNING)]
    assert plan["findings"] == [] and plan["changes"] == []
    assert plan["merge_base"] == subprocess.run(
        ["git", "-C", str(stack_repo), "rev-parse", "main~1"], capture_output=True, text=True,
        check=True).stdout.strip()
    # the same branch against the working tree: still only its own rotation
    code, plan = run_plan(capsys, stack_repo, "--base", "main")
    assert code == 0 and [r["secret"] for r in plan["rotations"]] == [SIGNING, SIGNING]
    assert main(["gate", "--json", "--repo", str(stack_repo), "--base", "main", "--head",
                 "rotate-signing"]) == 0
    capsys.readouterr()


# --- versions are canonical integers -----------------------------------------------------


@pytest.mark.parametrize("literal", ["10.0", "010", "+10", "1_0", "0x0a"])
def test_a_non_canonical_version_fails_plan_gate_and_bump_alike(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], literal: str
) -> None:
    edit(stack_repo, "prod", "        version: 9\n", f"        version: {literal}\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1 and plan["rotations"] == []
    [finding] = plan["findings"]
    where = "Pulumi.prod.yaml: tradepulse-vault:spec.static_secrets[1].version: "
    assert finding["message"].startswith(where) and "not a canonical integer" in \
        finding["message"] and "(line " in finding["message"]
    assert main(["gate", "--json", "--repo", str(stack_repo)]) == 1
    report = json.loads(capsys.readouterr().out)
    stack_files = next(c for c in report["checks"] if c["name"] == "stack-files")
    assert any(e.startswith(where) for e in stack_files["errors"]), stack_files
    git(stack_repo, "commit", "-qam", "odd literal")
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 2
    err = capsys.readouterr().err
    assert "static_secrets[1].version: " in err and "not a canonical integer" in err
    assert "(line " in err


def test_a_key_given_twice_fails_plan_as_it_fails_the_loader(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second `version:` under the secret: YAML keeps the last, so without this the plan
    # would report a rotation to whichever copy won.
    edit(stack_repo, "prod", "        version: 9\n", "        version: 9\n        version: 10\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1 and plan["rotations"] == []
    [finding] = plan["findings"]
    assert finding["message"].startswith("invalid stack file: Pulumi.prod.yaml: "
                                         "tradepulse-vault:spec.static_secrets[1].version")
    assert "duplicate key (first at line " in finding["message"]


# --- provided secrets: no replay ----------------------------------------------------------


def test_a_provided_secret_rotated_back_to_an_old_ciphertext_is_a_replay(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "prod", "config:\n",
         "config:\n  tradepulse-vault:brokerApiCredentials:\n    secure: v1:OLDOLD\n")
    git(stack_repo, "commit", "-qam", "broker credentials v4")
    edit(stack_repo, "prod", "secure: v1:OLDOLD", "secure: v1:NEWNEW")
    edit(stack_repo, "prod", "        version: 4\n", "        version: 5\n")
    git(stack_repo, "commit", "-qam", "rotate broker credentials to v5")
    edit(stack_repo, "prod", "secure: v1:NEWNEW", "secure: v1:OLDOLD")
    edit(stack_repo, "prod", "        version: 5\n", "        version: 6\n")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 1
    [finding] = [f for f in plan["findings"] if "replay" in f["message"]]
    assert finding["message"].startswith(
        f"{BROKER}: the new ciphertext of brokerApiCredentials is one Pulumi.prod.yaml already "
        "held (commit ")
    edit(stack_repo, "prod", "secure: v1:OLDOLD", "secure: v1:FRESH1")
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0 and [r["secret"] for r in plan["rotations"]] == [BROKER]


# --- bump --reason / --ticket travel into the plan ---------------------------------------


def test_the_reason_and_ticket_of_a_bump_are_in_the_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo), "--reason",
                 "quarterly rotation", "--ticket", "SEC-4711"]) == 0
    capsys.readouterr()
    text = (stack_repo / "Pulumi.staging.yaml").read_text()
    assert "version: 2 # quarterly rotation (ticket SEC-4711)\n" in text
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0
    [rotation] = plan["rotations"]
    assert (rotation["reason"], rotation["ticket"]) == ("quarterly rotation", "SEC-4711")
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    assert "| quarterly rotation ticket SEC-4711 |" in capsys.readouterr().out
    git(stack_repo, "commit", "-qam", "rotate")
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    [rotation] = plan["rotations"]
    assert (rotation["reason"], rotation["ticket"]) == (None, None), \
        "a comment left from an earlier bump is not this rotation's reason"


def test_the_reason_and_ticket_of_a_credential_bump_are_in_the_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for credential_id in CREDENTIALS:
        assert main(["bump", "--stack", "local", credential_id, "--allow-dirty", "--repo",
                     str(stack_repo), "--reason", f"rotate {credential_id.split('/')[-1]}",
                     "--ticket", "SEC-9"]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    got = {r["secret"]: (r["reason"], r["ticket"]) for r in plan["rotations"]}
    assert got == {cid: (f"rotate {cid.split('/')[-1]}", "SEC-9") for cid in CREDENTIALS}
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    assert "| rotate execution-settlement ticket SEC-9 |" in capsys.readouterr().out


def test_a_plan_that_needs_no_engine_does_not_claim_it_asked_one(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    markdown = capsys.readouterr().out
    assert "**Capabilities per principal**\n" in markdown
    assert "asked of OpenBao's policy engine" not in markdown
    assert "(the engine was not started)" in markdown


def test_a_workload_consuming_several_rotated_secrets_restarts_once(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    static = "database/static-roles/execution-settlement"
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    assert main(["bump", "--stack", "local", HMAC, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 0
    assert main(["bump", "--stack", "local", static, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 0
    capsys.readouterr()
    code, plan = run_plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    execution = "trading/Deployment/execution-connector"
    assert [r["secret"] for r in plan["rotations"]] == [SIGNING, HMAC, static]
    assert [(r["workload"], r["secrets"]) for r in plan["restarts"]] == [
        (execution, [SIGNING, static]),  # once, though two of its secrets rotate
        (plan["rotations"][1]["restarts"][0], [HMAC])]
    assert main(["plan", "--repo", str(stack_repo)]) == 0
    text = capsys.readouterr().out
    assert (f"1. `local` {execution}: picks up `{SIGNING}`, `{static}`") in text


def test_a_plan_parses_each_stack_file_once_however_many_rotations_it_has(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reason of each rotation is read from the one parse (it was a parse per rotation).

    Re-parsing the whole stack file twice per rotation made ``plan`` quadratic: 27 s for
    50 bumps in a 504-secret file (``bench/rotation_edits.py``).
    """
    from kernel.spec import stackfile

    parses: list[int] = []

    class Counting(stackfile.LOADER):  # type: ignore[misc, valid-type]
        def __init__(self, text: str) -> None:
            parses.append(len(text))
            super().__init__(text)

    monkeypatch.setattr(stackfile, "LOADER", Counting)

    def plan_parses() -> int:
        parses.clear()
        code, plan = run_plan(capsys, stack_repo)
        assert code == 0 and plan["findings"] == [], plan["findings"]
        return len(parses)

    assert main(["bump", "--stack", "local", HMAC, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    one = plan_parses()
    for secret_id in (SIGNING, *CREDENTIALS):
        assert main(["bump", "--stack", "local", secret_id, "--allow-dirty", "--repo",
                     str(stack_repo), "--reason", "many"]) == 0
    capsys.readouterr()
    assert plan_parses() == one, "a parse per rotation is back"
