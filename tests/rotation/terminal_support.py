"""Run the CLI on a pseudo-terminal, as an operator would see it.

``run_on_terminal`` starts ``python -m rotation ...`` with stdin, stdout and
stderr on the slave side of a pty (so ``isatty()`` is true, as at a real
terminal), optionally types ``answer`` once a prompt appears, and returns the
exit code and everything the terminal showed (ANSI colour codes removed).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


_TAKE_TERMINAL_AND_RUN = (
    "import fcntl, runpy, sys, termios\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "sys.argv = ['rotation', *sys.argv[1:]]\n"
    "runpy.run_module('rotation', run_name='__main__', alter_sys=True)\n"
)


def run_on_terminal(argv: list[str], *, env: dict[str, str], cwd: Path,
                    prompt: str | None = None, answer: str | None = None,
                    columns: int = 80, timeout: float = 60.0) -> tuple[int, str]:
    """Run ``python -m rotation *argv`` on a pty ``columns`` wide; type ``answer`` at ``prompt``."""
    master, slave = pty.openpty()
    full_env = {**env, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm"}
    # A new session that makes the pty its controlling terminal (getpass opens /dev/tty),
    # then runs `python -m rotation` in the same interpreter.
    proc = subprocess.Popen([sys.executable, "-c", _TAKE_TERMINAL_AND_RUN, *argv],
                            stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=full_env,
                            close_fds=True, start_new_session=True)
    os.close(slave)
    seen = b""
    typed = answer is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal (EIO)
                    break
                if not chunk:
                    break
                seen += chunk
            if not typed and prompt is not None and prompt.encode() in seen:
                assert answer is not None
                os.write(master, answer.encode())
                typed = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = _ANSI.sub("", seen.decode("utf-8", "replace")).replace("\r\n", "\n")
    return code, text
