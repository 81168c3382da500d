"""Atomic file writes: a reader sees the old file or the new one, never a mix.

The text goes to a temporary file in the same directory (same filesystem),
is flushed and fsynced, gets its final mode, and is renamed over the target.
On any failure the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically, with permissions ``mode``."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, mode: int = 0o600
) -> None:
    """Replace ``path`` with UTF-8 ``text`` atomically, with permissions ``mode``."""
    write_bytes_atomic(path, text.encode("utf-8"), mode=mode)
