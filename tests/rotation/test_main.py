"""``python -m rotation`` itself: a first run without the venv's packages is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_a_first_run_without_the_packages_is_one_line_not_a_traceback() -> None:
    # -S: no site-packages at all, as with a bare system Python; the package is found in cwd.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-S", "-m", "rotation", "drift", "--all"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "is not installed for" in proc.stderr and "make setup" in proc.stderr
