"""Every benchmark under ``bench/`` runs at a tiny size, so none of them can rot.

The assertions are about the output's structure (its table, its ratios, the
checks it makes on itself), never about timings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO_ROOT


def run_bench(script: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / script), *args, "--json"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["machine"] and "CPUs" in report["machine"]
    assert report["rows"] and all(len(r) == len(report["headers"]) for r in report["rows"])
    assert report["notes"]
    return dict(report)


def test_program_scale_compares_the_program_with_its_floor() -> None:
    report = run_bench("program_scale.py", "--sizes", "2,3", "--runs", "1")
    assert [r[0] for r in report["rows"]] == [2, 3]
    for result in report["results"]:
        # Same resources on both sides (the benchmark checks the digests itself).
        assert result["resources"] > 30
        assert result["program_s"] > 0 and result["floor_s"] > 0
        assert result["ratio"] == pytest.approx(result["program_s"] / result["floor_s"])
        assert result["program_peak_mib"] > 0
    assert any("per resource" in note for note in report["notes"])


def test_rotation_edits_bumps_and_plans() -> None:
    report = run_bench("rotation_edits.py", "--bump-services", "2", "--bumps", "3",
                       "--plan-services", "2", "--plan-bumps", "4", "--runs", "1")
    assert [r[0].split(" ")[0] for r in report["rows"]] == ["bump", "plan"]
    assert report["bump_median_s"] > 0 and report["plan_median_s"] > 0
    assert "4 rotations" in " ".join(report["notes"])


def test_gate_scale_times_the_gate_on_a_generated_repository() -> None:
    report = run_bench("gate_scale.py", "--services", "3", "--runs", "1", "--skip-this-repo")
    (result,) = report["results"]
    assert result["repository"] == "generated, 3 services"
    assert result["seconds"] > 0 and result["baseline_s"] > 0
    assert result["exit_codes"] and all(code in (0, 1) for code in result["exit_codes"])



def test_load_stack_compares_two_checkouts() -> None:
    # The checkout against itself: the structure, both sides measured, the ratio theirs.
    report = run_bench("load_stack.py", "--against", str(REPO_ROOT), "--services", "2,3",
                       "--runs", "1")
    assert [r[0] for r in report["rows"]] == [2, 3]
    for size in report["sizes"]:
        mine, theirs = size["this"], size["other"]
        assert mine["secrets"] == theirs["secrets"] > 5 * size["services"]
        assert mine["median"] > 0 and theirs["median"] > 0
    assert all(row[-1].endswith("x") for row in report["rows"])

@pytest.mark.integration
def test_live_scan_against_a_real_openbao() -> None:
    assert shutil.which("wrk"), "wrk is not installed: run bash tools/system-deps.sh (as root)"
    report = run_bench("live_scan.py", "--secrets", "20", "--runs", "1", "--bao-sample", "2",
                       "--wrk-seconds", "1", "--wrk-connections", "4")
    labels = [r[0] for r in report["rows"]]
    assert labels[0].startswith("rotation drift") and labels[1].startswith("rotation verify")
    assert any(label.startswith("(a) bao") for label in labels)
    assert any(label.startswith("(b) sequential hvac") for label in labels)
    assert any(label.startswith("(c) wrk") for label in labels)
    assert all(r[1] == 20 for r in report["rows"])
    assert {(c["scan"], c["baseline"]) for c in report["ratios"]} == {
        (scan, base) for scan in ("drift", "verify", "read_live") for base in "abc"}


@pytest.mark.integration
def test_rotate_root_race_counts_failures_in_order_and_beside() -> None:
    report = run_bench("rotate_root_race.py", "--rounds", "2")
    assert [r[0] for r in report["rows"]] == ["rotate-root", "rotate-role", "revoke-prefix",
                                             "issue"]
    assert all(r[1] == 2 for r in report["rows"])
    # One after another nothing fails (the benchmark exits 1 otherwise): what the program's
    # ordering relies on. Beside rotate-root is counted, not asserted: it is OpenBao's behaviour.
    assert report["apart"] == {}
    assert all(0 <= r[3] <= 2 for r in report["rows"])


@pytest.mark.integration
def test_faults_prints_one_row_per_fault_with_nothing_lost() -> None:
    report = run_bench("faults.py", "--writers", "2", "--rounds", "2", "--leases", "2",
                       "--lease-seconds", "20", "--run-seconds", "25")
    assert [r[0] for r in report["rows"]] == [
        "leader SIGKILLed during concurrent kv-put merge-retries",
        "leader SIGKILLed while the credential manager holds 2 leases"]
    for outcome in report["outcomes"]:
        # The benchmark exits 1 on a violated invariant; these are its own numbers.
        assert (outcome["values_lost"], outcome["double_writes"], outcome["leases_leaked"]) \
            == (0, 0, 0), outcome
        assert outcome["notes"] == []


@pytest.mark.e2e
def test_engine_compares_the_real_engine_with_its_floor() -> None:
    if shutil.which("pulumi") is None:
        pytest.fail("pulumi not on PATH: make toolchain && source tools/toolchain/env.sh")
    report = run_bench("engine.py", "--quick")
    [result] = report["results"]
    # Same URNs on both stacks (the benchmark refuses to report otherwise).
    assert result["services"] == 2 and result["resources"] > 30
    for key in ("preview", "up", "refresh"):
        assert result[f"floor_{key}"] > 0 and result[f"program_{key}"] > 0
        assert result[f"{key}_ratio"] == pytest.approx(
            result[f"program_{key}"] / result[f"floor_{key}"])
    assert result["targeted_speedup"] == pytest.approx(
        result["program_up"] / result["program_targeted"])
    assert result["program_check"] > 0
    assert any(note.startswith("load average") for note in report["notes"])
