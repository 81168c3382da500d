"""Read ``--env-file`` files (``KEY=VALUE`` lines) strictly.

Accepted: blank lines, ``#`` comments, an optional ``export`` prefix, values
in single or double quotes. Anything else is a :class:`BadInput` naming the
file and line number (never the line's content: it may hold a token).
Variables already set in the environment win over the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

from rotation.errors import BadInput

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_env_file(path: Path) -> dict[str, str]:
    """Return the variables of ``path``; raise :class:`BadInput` on any malformed line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: env file does not exist") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read env file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: not UTF-8 (byte {exc.start})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            raise BadInput(f"{path}:{number}: expected KEY=VALUE (line content not shown)")
        key, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif value[:1] in "'\"":
            raise BadInput(f"{path}:{number}: unterminated quote in value of {key}")
        values[key] = value
    return values


def load_env_file(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Merge ``path`` into ``environ`` without overriding set variables; return the names read."""
    target = os.environ if environ is None else environ
    values = parse_env_file(path)
    for key, value in values.items():
        target.setdefault(key, value)
    return sorted(values)
