"""Tables: key columns survive any width, details move under their row, pipes get plain rows."""

from __future__ import annotations

import io

import pytest

from rotation.tables import TableData, common_prefix, fit, render, render_terminal


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def sample() -> TableData:
    data = TableData("drift", ["stack", "secret", "declared", "live", "state", "note"],
                     key_columns=5)
    data.add(["staging", "secret/services/ingestion/market-data-feed", "4", "3", "pending",
              "v4 declared, not applied yet: run pulumi up " * 2], style="yellow")
    data.add(["prod", "secret/services/execution/session-signing-key", "9", "11", "drifted",
              "live v11 ahead of declared v9"], style="red")
    return data


@pytest.mark.parametrize("width", [50, 60, 80, 120])
def test_key_columns_fit_every_width_and_details_go_under_the_row(width: int) -> None:
    header, rows = fit(sample(), width)
    assert header.split()[:5] == ["STACK", "SECRET", "DECLARED", "LIVE", "STATE"]
    for (line, details), (stack, live, state) in zip(
            rows, [("staging", "3", "pending"), ("prod", "11", "drifted")], strict=True):
        assert line.split()[0] == stack and live in line.split() and line.endswith(state)
        assert len(line) <= width
        # Details wrap at the width; an id longer than the line is kept whole, never split.
        assert all(len(text) <= width or len(text.split()) <= 3 for text in details)
        assert details and details[0].startswith("  ↳ ")
    if width < 70:  # even the path column had to give: its end stays, the full id below
        assert "…" in rows[1][0] and "signing-key" in rows[1][0]
        assert "secret: secret/services/execution/session-signing-key" in " ".join(
            d.strip() for d in rows[1][1])


def test_wide_enough_means_one_line_per_row() -> None:
    header, rows = fit(sample(), 400)
    assert header.split()[-1] == "NOTE" and all(details == [] for _, details in rows)


def test_the_terminal_table_moves_the_shared_prefix_into_the_title() -> None:
    out = Terminal()
    render_terminal(sample(), out, width=80)
    text = out.getvalue()
    assert "drift (secrets under secret/services/)" in text
    assert "ingestion/market-data-feed" in text and "secret/services/ingestion" not in text


def test_off_a_terminal_rows_are_plain_and_whole() -> None:
    out = io.StringIO()
    render(sample(), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].split() == ["STACK", "SECRET", "DECLARED", "LIVE",
                                                    "STATE", "NOTE"]
    assert lines[2].split()[:5] == ["prod", "secret/services/execution/session-signing-key",
                                    "9", "11", "drifted"]
    assert "\x1b[" not in out.getvalue() and "│" not in out.getvalue()


def test_common_prefix_is_whole_segments() -> None:
    assert common_prefix(["secret/a/x", "secret/a/y", "secret/ab/z"]) == "secret/"
    assert common_prefix(["secret/a/x"]) == ""
