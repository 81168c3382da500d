"""End-to-end fixtures: the real Pulumi engine (tools/toolchain) against real servers.

Every test here runs ``pulumi`` for real, in a workspace made by
``tools/localenv.py`` with a file backend under the test's temp directory.
Without the toolchain the tests are skipped locally and fail in CI (a skip
is a failure there: see tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRED_PLUGINS = {"kubernetes", "random"}


def installed_plugins(pulumi: str) -> set[str]:
    """Names of the resource plugins the CLI has installed."""
    listed = subprocess.run([pulumi, "plugin", "ls", "--json"], capture_output=True, text=True,
                            check=True)
    return {p["name"] for p in json.loads(listed.stdout or "[]")}


@pytest.fixture(scope="session")
def engine() -> str:
    """The pulumi CLI with the kubernetes and random plugins installed."""
    found = shutil.which("pulumi")
    if found is None:
        message = "pulumi not on PATH: make toolchain && source tools/toolchain/env.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    missing = REQUIRED_PLUGINS - installed_plugins(found)
    if missing:
        pytest.fail(f"pulumi plugins missing: {sorted(missing)} (make toolchain)")
    return found


def git_init(root: Path) -> None:
    """Make the workspace a git checkout so bump/plan/verify see diffs."""
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.name", "E2E Operator"], check=True)
    subprocess.run([*git, "config", "user.email", "e2e@tradepulse.test"], check=True)
    # infra/ is a link to the repository; policies/ is a copy the plan reads at each revision.
    (root / ".gitignore").write_text("infra\n__pycache__/\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workspace"], check=True)
