"""The status line: off a terminal, one log line per period and the final state, no more."""

from __future__ import annotations

import pytest

from rotation.output import setup_logging
from rotation.progress import StatusLine


def test_off_a_terminal_lines_are_periodic_and_the_last_state_is_logged_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(verbose=False)
    now = [0.0]
    with StatusLine(every=60, clock=lambda: now[0]) as status:
        assert not status.on_terminal
        for second in range(0, 150):
            now[0] = float(second)
            status.update(f"{150 - second}s left")
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout stays for the command's result
    lines = captured.err.splitlines()
    assert lines == ["INFO rotation: 150s left", "INFO rotation: 90s left",
                     "INFO rotation: 30s left", "INFO rotation: 1s left"]


def test_a_final_state_already_logged_is_not_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(verbose=False)
    with StatusLine() as status:
        status.update("storing the new value")
    assert capsys.readouterr().err.count("storing the new value") == 1
