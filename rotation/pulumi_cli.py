"""Calls to the Pulumi CLI that the rotation commands need (config secrets, locks)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rotation.errors import BadInput, CheckFailed

CONFIG_NAMESPACE = "tradepulse-vault"


def pulumi_binary() -> str:
    """Return the ``pulumi`` CLI or refuse with what to do."""
    found = shutil.which("pulumi")
    if found is None:
        raise BadInput(
            "no Pulumi CLI on PATH: a provided secret's new value must be stored with "
            "`pulumi config set --secret`, which needs it; nothing was changed",
            hint="source tools/toolchain/env.sh (make toolchain) or install Pulumi",
        )
    return found


def set_secret_config(root: Path, stack: str, key: str, value: str) -> None:
    """Store ``value`` as the stack's encrypted config ``tradepulse-vault:<key>``.

    The value goes to the CLI on stdin, never on its command line.
    """
    cmd = [pulumi_binary(), "config", "set", "--secret", "--stack", stack,
           f"{CONFIG_NAMESPACE}:{key}", "--non-interactive"]
    proc = subprocess.run(cmd, input=value, capture_output=True, text=True, cwd=root,
                          timeout=120, check=False, env=dict(os.environ))
    if proc.returncode != 0:
        # Pulumi's message names the key and stack, never the value it read on stdin.
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"pulumi config set --secret {CONFIG_NAMESPACE}:{key} failed for "
                          f"stack {stack}: {detail[0][:300]}")
