"""``rotation.cli``: SIGTERM stops the command (exit 130), and only the command.

The command turns SIGTERM into a clean "interrupted" exit; while the gate's
secret scan runs its pool of worker processes, the stop is held until the pool
is shut down (a forked pool stopped halfway made the gate hang for ever), and
no worker outlives the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rotation.gates.secret_scan import usable_cores
from tests.conftest import REPO_ROOT


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_the_gate_with_a_process_pool_finishes(tmp_path: Path) -> None:
    assert usable_cores() >= 2, "this test needs two cores to run detect-secrets' pool"
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for i in range(8):
        (root / f"m{i}.py").write_text(f"# module {i}\nVALUE = {i}\n")
    git(root, "add", ".")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x")
    proc = subprocess.run([sys.executable, "-m", "rotation", "gate", "--json", "--repo",
                           str(root)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    report = json.loads(proc.stdout)
    secrets = next(c for c in report["checks"] if c["name"] == "secrets")
    assert secrets["ok"] and secrets["summary"].startswith("8 tracked files scanned"), secrets
    assert proc.returncode == 1  # no stack files: the stack-files check fails, nothing hangs
    assert "Traceback" not in proc.stderr


def test_sigterm_to_the_command_is_exit_130_without_a_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "rotation", "gate", "--json", "--repo",
                             str(REPO_ROOT)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    # Wait until the scan's pool is up (two worker processes), then stop the command.
    while time.monotonic() < deadline and len(_children(proc.pid)) < 2:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) >= 2, "the gate never started its scan's worker processes"
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert json.loads(out)["error"] == "stopped by SIGTERM"
    assert "Traceback" not in err
    # The workers are gone (the pool is shut down before the exit; a helper process of the
    # pool's own, such as multiprocessing's resource tracker, ends when it sees the exit).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [w for w in workers if _alive(w)]:
        time.sleep(0.05)
    assert not [w for w in workers if _alive(w)]


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []
