"""``bump --due`` against a real OpenBao: on a clock moved forward, exactly the due ones."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotation.cli import main
from tests.rotation.commands.test_bump import diff_lines
from tests.rotation.commands.test_rollback import commit

pytestmark = pytest.mark.integration

CANARY = "CANARY-bump-due-7d21"
SIGNING = "secret/services/execution/session-signing-key"
HMAC = "secret/services/analytics/warehouse-hmac"
BROKER = "secret/services/execution/broker-api"
FEED = "secret/services/ingestion/market-data-feed"
DAY = 24 * 60 * 60


@pytest.fixture
def seeded(openbao: Any, stack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The local stack's four secrets at version 1 in a dev OpenBao (values: the canary)."""
    client: hvac.Client = openbao.client()
    for secret_id in (SIGNING, HMAC, BROKER, FEED):
        path = secret_id.removeprefix("secret/")
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"V": CANARY}, cas=0,
                                                     mount_point="secret")
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    return stack_repo


def bump_due(capsys: pytest.CaptureFixture[str], root: Path, days: int) -> tuple[int, Any]:
    now = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code = main(["bump", "--json", "--due", "--stack", "local", "--now", now,
                 "--reason", "due", "--repo", str(root)])
    out, err = capsys.readouterr()
    assert CANARY not in out + err
    return code, json.loads(out) if out else err


def test_nothing_is_due_today(seeded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = bump_due(capsys, seeded, 0)
    assert code == 0 and result["bumped"] == [] and result["files"] == []
    assert diff_lines(seeded) == []


def test_a_clock_moved_forward_bumps_exactly_the_due_ones_and_the_gate_passes(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # +31 days: only the 30-day signing key is due.
    code, result = bump_due(capsys, seeded, 31)
    assert code == 0, result
    assert [(r["id"], r["old_version"], r["new_version"]) for r in result["bumped"]] == [
        (SIGNING, 1, 2)]
    assert result["needs_owner"] == [] and result["files"] == ["Pulumi.local.yaml"]
    (removed, added) = diff_lines(seeded)
    assert removed.split() == ["-", "version:", "1"] and added.split() == [
        "+", "version:", "2", "#", "due"]
    subprocess.run(["git", "-C", str(seeded), "checkout", "-q", "--", "."], check=True)
    # +91 days: the 90-day provided secrets need their owners; the generated one is bumped.
    code, result = bump_due(capsys, seeded, 91)
    assert code == 0, result
    assert [r["id"] for r in result["bumped"]] == [SIGNING]
    assert sorted(r["id"] for r in result["needs_owner"]) == [BROKER, FEED]
    assert all("--value-stdin" in r["how"] for r in result["needs_owner"])
    # +181 days: the 180-day HMAC key too, in the same one edit of the file.
    subprocess.run(["git", "-C", str(seeded), "checkout", "-q", "--", "."], check=True)
    code, result = bump_due(capsys, seeded, 181)
    assert sorted(r["id"] for r in result["bumped"]) == [HMAC, SIGNING]
    changed = diff_lines(seeded)
    assert len(changed) == 4 and all("version:" in line for line in changed), changed
    commit(seeded, "rotate what is due")
    assert main(["gate", "--base", "HEAD~1", "--repo", str(seeded)]) == 0
    gate = capsys.readouterr().out
    assert f"local {SIGNING} v1->v2" in gate and f"local {HMAC} v1->v2" in gate


def test_bump_due_refuses_bad_use_and_changes_nothing(
    seeded: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--due", "--stack", "local", "--repo", str(seeded)]) == 2
    assert "needs --reason" in capsys.readouterr().err
    assert main(["bump", "--due", "--stack", "local", SIGNING, "--reason", "x",
                 "--repo", str(seeded)]) == 2
    assert "takes no ID" in capsys.readouterr().err
    assert main(["bump", "--all", SIGNING, "--repo", str(seeded)]) == 2
    capsys.readouterr()
    assert diff_lines(seeded) == []
