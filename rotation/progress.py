"""Progress for long waits: a live status line on a terminal, periodic lines off one.

Also the bar for long reads (:func:`progress_bar`): the live reader reports
how far it got through a callback, and the commands draw it here.

``verify --watch 15m`` watches the audit log for fifteen minutes; silence for
that long reads as a hang. On a terminal (stderr) the status line is
rewritten in place every second (time left, what passes); in a pipe, a file
or CI one plain log line is written every ``every`` seconds and at the end,
so a log shows the watch was alive without a line per second. stdout is never
touched: ``--json`` stays one document.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.status import Status

from rotation.output import log

PERIODIC_SECONDS = 60.0


class StatusLine:
    """A status line for one long wait; ``update(text)`` as often as wanted."""

    def __init__(self, *, every: float = PERIODIC_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._console = Console(stderr=True, highlight=False, markup=False)
        self._live: Status | None = None
        self._every = every
        self._clock = clock
        self._last_logged: float | None = None
        self._logged_text = ""
        self.text = ""

    @property
    def on_terminal(self) -> bool:
        """True when stderr is a terminal (the line is redrawn in place)."""
        return self._console.is_terminal and sys.stderr.isatty()

    def __enter__(self) -> Self:
        if self.on_terminal:
            self._live = self._console.status("", spinner="dots")
            self._live.start()
        return self

    def update(self, text: str) -> None:
        """Show ``text``: redraw at once on a terminal, else log it if a period has passed."""
        self.text = text
        if self._live is not None:
            self._live.update(text)
            return
        now = self._clock()
        if self._last_logged is None or now - self._last_logged >= self._every:
            self._last_logged = now
            self._logged_text = text
            log.info("%s", text)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()
        if self.text and self.text != self._logged_text:
            log.info("%s", self.text)  # the last state stays on screen and in the log


@contextmanager
def progress_bar(description: str, *,
                 console: Console | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield ``advance(n, total)`` drawing a transient bar on a terminal (stderr), else nothing.

    ``advance`` may be called from worker threads (rich's progress is locked).
    """
    console = console or Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task(description, total=None)

        def advance(n: int, total: int) -> None:
            progress.update(task, total=total, advance=n)

        yield advance
