"""``rollback``: version +1 and ``restores: M`` in one reviewed edit; plan and gate know it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rotation.cli import main
from tests.rotation.commands.test_bump import diff_lines

SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"


def commit(root: Path, message: str) -> None:
    subprocess.run(["git", "-C", str(root), "commit", "-qam", message], check=True)


def test_rollback_adds_restores_beside_the_bumped_version(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback", "--json", "--stack", "prod", SIGNING, "--to-version", "7",
                 "--reason", "bad key broke the verifier", "--ticket", "INC-512",
                 "--repo", str(stack_repo)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["old_version"], payload["new_version"], payload["cas"],
            payload["restores"]) == (9, 10, 9, 7)
    assert diff_lines(stack_repo) == [
        "-        version: 9",
        "+        version: 10 # bad key broke the verifier (ticket INC-512)",
        "+        restores: 7"]


def test_the_bump_after_a_rollback_removes_restores(stack_repo: Path) -> None:
    assert main(["rollback", "--stack", "prod", SIGNING, "--to-version", "7",
                 "--repo", str(stack_repo)]) == 0
    commit(stack_repo, "rollback")
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 0
    assert diff_lines(stack_repo) == ["-        version: 10", "-        restores: 7",
                                      "+        version: 11"]


@pytest.mark.parametrize("to_version", ["9", "10", "0", "-1"])
def test_a_rollback_must_restore_an_older_version(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], to_version: str
) -> None:
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    assert main(["rollback", "--stack", "prod", SIGNING, "--to-version", to_version,
                 "--repo", str(stack_repo)]) == 2
    assert (f"--to-version {to_version}: a rollback restores one of versions 1 to 8, older "
            "than the current one (9); nothing changed") in capsys.readouterr().err
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == before


def test_a_secret_at_its_first_version_has_nothing_to_roll_back_to(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = "secret/services/execution/broker-api"  # version 1 in the local stack
    before = (stack_repo / "Pulumi.local.yaml").read_bytes()
    assert main(["rollback", "--stack", "local", broker, "--to-version", "1",
                 "--repo", str(stack_repo)]) == 2
    assert ("--to-version 1: a rollback restores an older version, and version 1 is the "
            "first; nothing changed") in capsys.readouterr().err
    assert (stack_repo / "Pulumi.local.yaml").read_bytes() == before


def test_a_mirror_and_a_credential_are_refused(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback", "--stack", "dr", SIGNING, "--to-version", "1",
                 "--repo", str(stack_repo)]) == 2
    assert "bump it there" in capsys.readouterr().err
    assert main(["rollback", "--stack", "prod", "identity/oidc/key/tradepulse-adapters",
                 "--to-version", "1", "--repo", str(stack_repo)]) == 2
    assert "only KV secrets have a version history" in capsys.readouterr().err


def test_plan_and_gate_show_a_rollback_of_a_provided_secret_without_a_new_value(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rollback", "--stack", "staging", BROKER, "--to-version", "1",
                 "--reason", "exchange rejected the new key", "--repo", str(stack_repo)]) == 0
    commit(stack_repo, "rollback broker key")
    capsys.readouterr()
    assert main(["plan", "--json", "--base", "HEAD~1", "--repo", str(stack_repo)]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["findings"] == [] and plan["changes"] == []
    (rotation,) = plan["rotations"]
    assert (rotation["secret"], rotation["old_version"], rotation["new_version"],
            rotation["cas"], rotation["restores"]) == (BROKER, 2, 3, 2, 1)
    assert "data of version 1 read from Vault's history" in rotation["apply"]
    assert main(["plan", "--base", "HEAD~1", "--repo", str(stack_repo)]) == 0
    markdown = capsys.readouterr().out
    assert f"`{BROKER}` **rollback: restores version 1** | 2 → 3 | 2 |" in markdown
    assert "exchange rejected the new key" in markdown
    assert main(["gate", "--base", "HEAD~1", "--repo", str(stack_repo)]) == 0
    assert "(rollback: restores v1)" in capsys.readouterr().out


def test_plan_refuses_restores_without_a_bump_and_a_value_with_a_rollback(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / "Pulumi.prod.yaml"
    text = path.read_text()
    path.write_text(text.replace("        version: 9\n", "        version: 9\n"
                                 "        restores: 7\n", 1))
    capsys.readouterr()
    assert main(["plan", "--json", "--repo", str(stack_repo)]) == 1
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert any("restores changed without a version bump" in f["message"] for f in findings)
