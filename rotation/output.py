"""Output discipline: ``--json`` prints only JSON on stdout; logs go to stderr.

Commands return a :class:`Result`; the CLI renders it once, as JSON or as
text (with rich tables on a terminal). Nothing in a Result may hold a secret
value: results carry identifiers, versions, timestamps and evidence.

Addresses are shown without credentials where they are formatted
(:func:`kernel.redact.display_url`); as a second line of defence every string
of a JSON payload, every error message and hint, and every log record pass
through :func:`kernel.redact.scrub_urls` on their way out, so a URL with
userinfo or a query string that a new message forgets is still cut.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from kernel.redact import has_url_credentials, scrub_urls

log = logging.getLogger("rotation")


@dataclass
class Result:
    """What a command produced: a JSON-able payload, a text renderer and an exit code."""

    payload: dict[str, Any]
    render_text: Callable[[TextIO], None] | None = None
    exit_code: int = 0
    messages: list[str] = field(default_factory=list)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes to whatever ``sys.stderr`` is when a record is emitted."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        return None


class _ScrubbingFormatter(logging.Formatter):
    """A formatter whose lines have every URL without userinfo and query string."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_urls(super().format(record))


class _ScrubbingStream(io.TextIOBase):
    """A text stream that writes to ``target`` with every URL scrubbed (see the docstring).

    It answers ``isatty``/``fileno`` like its target, so rich still sees a
    terminal (and its width) where there is one.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(scrub_urls(text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return self._target.isatty()

    def fileno(self) -> int:
        return self._target.fileno()


def _scrubbed(value: Any) -> Any:
    """Return a JSON-able ``value`` with :func:`scrub_urls` applied to every string in it."""
    if isinstance(value, str):
        return scrub_urls(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


def setup_logging(verbose: bool) -> None:
    """Send log records to stderr, never stdout."""
    handler = _StderrHandler()
    handler.setFormatter(_ScrubbingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("rotation")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def emit(result: Result, *, as_json: bool, stream: TextIO | None = None) -> None:
    """Write ``result`` to stdout as JSON (``--json``) or as text."""
    out = stream or sys.stdout
    if as_json:
        # Indented for a person at a terminal; compact (json's C encoder: much faster on a
        # large report, see docs/benchmarks.md) for pipes, files and CI.
        indent = 2 if out.isatty() else None
        text = json.dumps(result.payload, indent=indent, sort_keys=True, default=str)
        if has_url_credentials(text):  # rare: rebuild it with every URL scrubbed
            text = json.dumps(_scrubbed(result.payload), indent=indent, sort_keys=True,
                              default=str)
        out.write(text)
        out.write("\n")
    elif result.render_text is not None:
        result.render_text(cast(TextIO, _ScrubbingStream(out)))
    else:
        for key, value in result.payload.items():
            out.write(scrub_urls(f"{key}: {value}\n"))
    out.flush()


def emit_error(message: str, hint: str | None, code: int, *, as_json: bool) -> None:
    """Report a failure: JSON on stdout for ``--json`` callers, always a line on stderr."""
    message = scrub_urls(message)
    hint = scrub_urls(hint) if hint else hint
    if as_json:
        json.dump({"ok": False, "error": message, "hint": hint, "exit_code": code},
                  sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()
