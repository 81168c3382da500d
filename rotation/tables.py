"""Tables for people and for pipes: key columns always fit, plain rows off a terminal.

``drift`` and ``due`` print one row per secret. A table that drops its
stack, version or status column at 80 columns hides exactly what the on-call
reader came for, so columns are split in two kinds:

* **key** columns (stack, secret, versions, status) are always shown: the
  path prefix every secret shares moves into the title, and a path still too
  long keeps its end (``…/session-signing-key``) with the full id on the
  detail line;
* **detail** columns (notes, dates, intervals) are columns when the terminal
  is wide enough for all of them, and otherwise one indented line under
  their row.

Off a terminal (a pipe, a file, CI) the output is plain: a header line and
one line per row, columns separated by two spaces, no box characters, no
truncation, no colour, so ``grep`` and ``awk`` work. ``--json`` stays the
machine interface.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console
from rich.text import Text

_GAP = "  "


@dataclass
class TableData:
    """Rows of strings with a title; the first ``key_columns`` columns are key columns."""

    title: str
    headers: list[str]
    key_columns: int
    rows: list[list[str]] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)

    def add(self, cells: Sequence[str], style: str | None = None) -> None:
        """Append one row (as many cells as headers)."""
        if len(cells) != len(self.headers):
            raise ValueError(f"{len(cells)} cells for {len(self.headers)} columns")
        self.rows.append(list(cells))
        self.styles.append(style)


def common_prefix(paths: Sequence[str]) -> str:
    """Return the leading ``a/b/`` segments every path shares (empty for fewer than two)."""
    if len(paths) < 2:
        return ""
    split = [p.split("/")[:-1] for p in paths]
    shared: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(parts[0])
    return "/".join(shared) + "/" if shared else ""


def _widths(rows: Sequence[Sequence[str]], columns: range) -> list[int]:
    return [max(len(r[i]) for r in rows) for i in columns]


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [c.ljust(w) for c, w in zip(cells[:-1], widths[:-1], strict=True)]
    return _GAP.join([*padded, cells[-1]]).rstrip()


def render_plain(data: TableData, out: TextIO) -> None:
    """Write a header line and one line per row, columns padded, nothing cut."""
    lines = [[h.upper() for h in data.headers], *data.rows]
    widths = _widths(lines, range(len(data.headers)))
    for cells in lines:
        out.write(_line(cells, widths) + "\n")


def terminal_width(out: TextIO) -> int:
    """Return the width to lay out for: ``$COLUMNS``, else the terminal's, else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 80


def _abbreviate(path: str, width: int) -> str:
    """Keep the end of a path (the secret's name), marking what was cut with ``…``."""
    return path if len(path) <= width else "…" + path[-(width - 1):]


def fit(data: TableData, width: int) -> tuple[str, list[tuple[str, list[str]]]]:
    """Lay ``data`` out in ``width`` columns: header line and, per row, its line and details.

    All columns when they fit; otherwise the key columns (the secret path,
    column 1, shortened from the left if even they do not fit) with the
    detail columns as wrapped ``↳`` lines under the row.
    """
    lines = [[h.upper() for h in data.headers], *data.rows]
    every = range(len(data.headers))
    widths = _widths(lines, every)
    if sum(widths) + len(_GAP) * (len(widths) - 1) <= width:
        return _line(lines[0], widths), [(_line(c, widths), []) for c in lines[1:]]
    keys = range(data.key_columns)
    widths = _widths(lines, keys)
    others = sum(widths) - widths[1] + len(_GAP) * (len(widths) - 1)
    path_width = max(12, width - others)
    shortened = [[_abbreviate(c, path_width) if i == 1 else c for i, c in enumerate(r[:len(
        keys)])] for r in lines]
    widths = _widths(shortened, keys)
    rows: list[tuple[str, list[str]]] = []
    for full, short in zip(lines[1:], shortened[1:], strict=True):
        details = [f"{data.headers[i]}: {full[i]}" for i in range(data.key_columns,
                                                                  len(full))
                   if full[i] and full[i] != "-"]
        if short[1] != full[1]:
            details.insert(0, f"{data.headers[1]}: {full[1]}")
        rows.append((_line(short, widths), _detail_lines(details, width)))
    return _line(shortened[0], widths), rows


def _detail_lines(details: Sequence[str], width: int) -> list[str]:
    """Pack the details into ``↳`` lines of at most ``width``; a detail is split only if alone."""
    lines: list[str] = []
    current = ""
    for detail in details:
        candidate = f"{current}; {detail}" if current else f"  ↳ {detail}"
        if len(candidate) <= width or not current:
            current = candidate
            continue
        lines.append(current)
        current = f"  ↳ {detail}"
    if current:
        lines.append(current)
    wrapped: list[str] = []
    for line in lines:  # a single detail longer than the line wraps, its words whole
        wrapped += textwrap.wrap(line, width=max(20, width), subsequent_indent="      ",
                                 break_on_hyphens=False, break_long_words=False) or [line]
    return wrapped


def render_terminal(data: TableData, out: TextIO, *, width: int | None = None) -> None:
    """Write the table fitted to ``width`` (default: the terminal's), in colour."""
    width = width or terminal_width(out)
    console = Console(file=out, width=width, highlight=False, markup=False,
                      force_terminal=True, soft_wrap=True)
    prefix = common_prefix([r[1] for r in data.rows])
    shown = TableData(data.title + (f" (secrets under {prefix})" if prefix else ""),
                      data.headers, data.key_columns,
                      [[c[len(prefix):] if i == 1 else c for i, c in enumerate(r)]
                       for r in data.rows], data.styles)
    header, rows = fit(shown, width)
    console.print(Text(shown.title, style="bold"))
    console.print(Text(header, style="bold"))
    for (line, details), style in zip(rows, data.styles, strict=True):
        console.print(Text(line, style=style or ""))
        for detail in details:
            console.print(Text(detail, style="dim"))


def write_line(out: TextIO, text: str) -> None:
    """Write one message line; on a terminal wrapped to its width (indented continuation)."""
    if out.isatty():
        text = "\n".join(textwrap.wrap(text, width=terminal_width(out), subsequent_indent="  ",
                                       break_on_hyphens=False)) or text
    out.write(text + "\n")


def render(data: TableData, out: TextIO) -> None:
    """Plain rows off a terminal, a fitted table on one."""
    if out.isatty():
        render_terminal(data, out)
    else:
        render_plain(data, out)
