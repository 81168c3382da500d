"""``keep_previous`` and ``retire``: one previous value kept until a second reviewed change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rotation.cli import main
from tests.rotation.commands.test_bump import diff_lines
from tests.rotation.commands.test_rollback import commit

HMAC = "secret/services/analytics/warehouse-hmac"


@pytest.fixture
def keeping(stack_repo: Path) -> Path:
    """The staging HMAC key declared ``keep_previous: true`` (committed)."""
    path = stack_repo / "Pulumi.staging.yaml"
    text = path.read_text()
    anchor = "        path: services/analytics/warehouse-hmac\n"
    assert anchor in text
    path.write_text(text.replace(anchor, anchor + "        keep_previous: true\n", 1))
    commit(stack_repo, "keep the previous HMAC key during a changeover")
    return stack_repo


def test_a_keep_previous_bump_records_the_kept_version_and_a_second_bump_is_refused(
    keeping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 0
    assert diff_lines(keeping) == ["-        version: 1", "+        version: 2",
                                   "+        previous: 1"]
    commit(keeping, "rotate")
    capsys.readouterr()
    assert main(["plan", "--base", "HEAD~1", "--repo", str(keeping)]) == 0
    assert "(keeps version 1 as `<KEY>_PREVIOUS` until retire)" in capsys.readouterr().out
    before = (keeping / "Pulumi.staging.yaml").read_bytes()
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 2
    assert "still keeps version 1's value as <KEY>_PREVIOUS" in capsys.readouterr().err
    assert (keeping / "Pulumi.staging.yaml").read_bytes() == before


def test_retire_drops_the_previous_value_in_one_reviewed_change(
    keeping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retire", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 2
    assert "keeps no previous value" in capsys.readouterr().err
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 0
    commit(keeping, "rotate")
    capsys.readouterr()
    assert main(["retire", "--json", "--stack", "staging", HMAC, "--reason", "consumers moved",
                 "--repo", str(keeping)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (payload["old_version"], payload["new_version"], payload["retired"],
            payload["dropped"]) == (2, 3, 2, ["HMAC_KEY_PREVIOUS"])
    assert diff_lines(keeping) == ["-        version: 2", "-        previous: 1",
                                   "+        version: 3 # consumers moved",
                                   "+        retired: 2"]
    commit(keeping, "retire")
    assert main(["plan", "--json", "--base", "HEAD~1", "--repo", str(keeping)]) == 0
    (rotation,) = json.loads(capsys.readouterr().out)["rotations"]
    assert (rotation["retired"], rotation["cas"]) == (2, 2)
    assert "without the previous value" in rotation["apply"]
    # The bump after a retire is a normal keep_previous rotation again.
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 0
    assert diff_lines(keeping) == ["-        version: 3 # consumers moved", "-        retired: 2",
                                   "+        version: 4 # consumers moved",
                                   "+        previous: 3"]


def test_the_gate_refuses_a_second_rotation_while_a_previous_value_is_kept(
    keeping: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", HMAC, "--repo", str(keeping)]) == 0
    commit(keeping, "rotate")
    path = keeping / "Pulumi.staging.yaml"  # a hand edit around bump's refusal
    path.write_text(path.read_text().replace("        version: 2\n        previous: 1\n",
                                             "        version: 3\n        previous: 2\n", 1))
    capsys.readouterr()
    assert main(["gate", "--base", "HEAD", "--repo", str(keeping)]) == 1
    assert "a second rotation while version 1's value is still kept" in capsys.readouterr().out
