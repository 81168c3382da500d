"""record against a real OpenBao: only applied rotations, once each, identifiers it checked.

Canaries are planted in every free-text position an evidence file, a
dynamic output or a flag offers; the record, stdout and stderr never hold
them. A rotation whose live version is not the declared one is refused
(exit 1) and nothing is written; recording the same rotation again leaves
one entry.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from tests.planted import word_initial_token
from tests.reliability.support import repo_files
from tests.rotation.commands.test_preflight_verify import (
    SIGNING,
    apply_like_pulumi,
    audit_log,
    cli,
    commit_all,
    common,
    vault,
)

pytestmark = pytest.mark.integration

CANARY = word_initial_token(30)
RECORDS = Path("reports/security/secret-rotations")
__all__ = ["vault"]  # the fixture, shared with test_preflight_verify


@pytest.fixture
def rotated(vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """The local stack applied at v1, then SIGNING bumped to v2 and committed (not applied)."""
    apply_like_pulumi(vault.client(), stack_repo, "local")
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit_all(stack_repo, "rotate")
    capsys.readouterr()
    return vault


def test_a_rotation_not_applied_is_refused_and_nothing_written(
    rotated: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = repo_files(stack_repo)
    code, out, err = cli(capsys, "record", *common(rotated, stack_repo), "--secret", SIGNING,
                         "--date", "2026-11-27")
    assert code == 1, err
    assert f"{SIGNING}: live version 1, declared 2" in out["error"]
    assert "pulumi up --stack local" in out["hint"]
    assert repo_files(stack_repo) == before
    assert not (stack_repo / RECORDS).exists() and not (stack_repo / "docs").exists()


def test_the_same_rotation_recorded_twice_leaves_one_entry(
    rotated: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    apply_like_pulumi(rotated.client(), stack_repo, "local", only=SIGNING)
    args = [*common(rotated, stack_repo), "--secret", SIGNING]
    code, first, err = cli(capsys, "record", *args, "--date", "2026-11-27")
    assert code == 0, err
    assert [e["new_version"] for e in first["entries"]] == [2]
    # Again the same day, and on another day: nothing added, the first record named.
    for day in ("2026-11-27", "2026-11-28"):
        code, again, err = cli(capsys, "record", *args, "--date", day)
        assert code == 0, err
        assert again["entries"] == [] and again["record"] is None
        assert again["already_recorded"][0]["recorded_in"] == first["record"]
    texts = [p.read_text() for p in (stack_repo / RECORDS).glob("*.md")]
    assert len(texts) == 1 and texts[0].count(f"| `{SIGNING}` | 1 → 2 |") == 1
    code = main(["record", *args, "--date", "2026-11-29"])
    assert code == 0
    assert f"already recorded: {SIGNING} v2 in {first['record']}" in capsys.readouterr().out


def _evidence(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc))
    return path


def test_no_free_text_from_evidence_reaches_the_record(
    rotated: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    apply_like_pulumi(rotated.client(), stack_repo, "local", only=SIGNING)
    code, verify, _ = cli(capsys, "verify", *common(rotated, stack_repo), "--audit-log",
                          audit_log(rotated))
    assert code == 0
    # Free text an edited file could hold: failures, warnings, hints, audit errors.
    verify["ok"] = False
    verify["failures"] = [f"password={CANARY}"]
    verify["warnings"] = [CANARY]
    verify["audit_log"] = CANARY
    verify["audit_evidence"][SIGNING]["error"] = CANARY
    verify["audit_evidence"][SIGNING]["remote_address"] = CANARY
    evidence = _evidence(tmp_path / "verify.json", verify)
    code, out, err = cli(capsys, "record", *common(rotated, stack_repo), "--evidence",
                         str(evidence), "--date", "2026-11-27")
    assert code == 0, err
    record = (stack_repo / out["record"]).read_text()
    assert "verify FAILED (1 failure(s), not copied)" in record
    assert "request `" in record
    assert CANARY not in record + json.dumps(out) + err


@pytest.mark.parametrize("where", ["versions[0].secret", "audit_evidence.request_id",
                                   "dynamic lease_id", "--pr", "--ticket", "--operator"])
def test_a_canary_in_an_identifier_position_is_refused(
    where: str, rotated: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    apply_like_pulumi(rotated.client(), stack_repo, "local", only=SIGNING)
    code, verify, _ = cli(capsys, "verify", *common(rotated, stack_repo), "--audit-log",
                          audit_log(rotated))
    assert code == 0
    dynamic = {"lease_id": "database/creds/tradepulse-execution/Ab12", "lease_duration": 300,
               "renewable": True, "role": "tradepulse-execution", "mount": "database"}
    extra: list[str] = []
    field = where
    if where == "versions[0].secret":
        verify["versions"][0]["secret"] = CANARY
    elif where == "audit_evidence.request_id":
        verify["audit_evidence"][SIGNING]["request_id"] = CANARY
        field = f"audit_evidence[{SIGNING}].request_id"
    elif where == "dynamic lease_id":
        dynamic["lease_id"] = f"database/creds/{CANARY}"
        field = "lease_id"
    else:
        extra = [where, f"ops {CANARY}" if where == "--operator" else CANARY]
    evidence = _evidence(tmp_path / "verify.json", verify)
    dyn = _evidence(tmp_path / "dynamic.json", dynamic)
    before = repo_files(stack_repo)
    code, out, err = cli(capsys, "record", *common(rotated, stack_repo), "--evidence",
                         str(evidence), "--dynamic-output", str(dyn), *extra,
                         "--date", "2026-11-27")
    assert code == 2, err
    assert f"{field}: a " in out["error"], out["error"]
    assert CANARY not in json.dumps(out) + err
    assert repo_files(stack_repo) == before


def test_the_deploy_workflows_references_are_accepted(
    rotated: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """.github/workflows/deploy-stack.yml passes "$GITHUB_ACTOR (CI)" and the run's URL."""
    apply_like_pulumi(rotated.client(), stack_repo, "local", only=SIGNING)
    run_url = "https://github.com/tradepulse/tradepulse-vault/actions/runs/12345678901"
    code, out, err = cli(capsys, "record", *common(rotated, stack_repo), "--secret", SIGNING,
                         "--operator", "dependabot[bot] (CI)", "--ticket", run_url,
                         "--pr", "https://github.com/tradepulse/tradepulse-vault/pull/7",
                         "--date", "2026-11-27")
    assert code == 0, err
    record = (stack_repo / out["record"]).read_text()
    assert f"- ticket: {run_url}" in record and "(CI)" in record


@pytest.mark.parametrize("day", ["2026-13-45", "2026-02-30", "2026-1-4", "20261201"])
def test_a_date_that_is_not_a_calendar_day_is_refused_before_vault_is_asked(
    day: str, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The shape alone let 2026-13-45 through: Vault was asked, then the record got that day.
    before = repo_files(stack_repo)
    closed = "http://127.0.0.1:9"  # nothing listens: asking Vault would be exit 3
    code = main(["record", "--json", "--stack", "local", "--repo", str(stack_repo),
                 "--address", closed, "--secret", SIGNING, "--date", day])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    error = json.loads(captured.out)["error"]
    assert f"argument --date: '{day}' is not a day written YYYY-MM-DD" in error
    assert repo_files(stack_repo) == before
