"""tools/phase_times.py: the per-phase summary at the end of `.ci/run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.phase_times import main, summarize

COLD_RUN = """\
make: .venv/.deps-11ab42749998 took 75 s
make: system-deps took 1 s
--- [1/6] pulumi: built in 410 s (CPU 700 s)
--- [6/6] kube-apiserver: built in 905 s (CPU 1020 s)
make: toolchain took 1201 s
make: lint took 88 s
make: test took 1265 s
"""


def test_a_cold_run_gives_every_phase_and_the_components() -> None:
    out = summarize(COLD_RUN.splitlines(), total=2640)
    assert out == [
        "ci: phases: setup 75 s, system-deps 1 s, toolchain 1201 s, lint 88 s, test 1265 s;"
        " total 2640 s",
        "ci: toolchain components (built side by side): pulumi 410 s (CPU 700 s),"
        " kube-apiserver 905 s (CPU 1020 s)",
    ]


def test_a_phase_without_its_line_is_not_timed_and_says_why() -> None:
    # A warm run: the venv and the toolchain were up to date; the tests failed (no line).
    lines = ["make: system-deps took 0 s", "make: toolchain took 1 s", "make: lint took 90 s"]
    out = summarize(lines, total=400)
    assert out[0] == ("ci: phases: setup not timed, system-deps 0 s, toolchain 1 s, lint 90 s,"
                      " test not timed; total 400 s")
    assert out[1] == ("ci: not timed means no end line in this run (up to date, not reached"
                      " or failed): setup, test")
    assert len(out) == 2


def test_other_lines_and_targets_are_ignored() -> None:
    lines = ["make: kube took 3 s", "    kubernetes: go: downloading x v1",
             "--- [2/6] building vault"]
    assert summarize(lines, total=5)[0].startswith("ci: phases: setup not timed, system-deps not")


def test_main_reads_the_log_and_a_missing_log_is_no_phase(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "phases"
    log.write_text(COLD_RUN)
    assert main(["--total", "2640", str(log)]) == 0
    assert main(["--total", "3", str(tmp_path / "absent")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("test 1265 s; total 2640 s")
    assert out[1].startswith("ci: toolchain components")
    assert out[2] == ("ci: phases: setup not timed, system-deps not timed, toolchain not timed,"
                      " lint not timed, test not timed; total 3 s")
