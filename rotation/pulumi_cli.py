"""Calls to the Pulumi CLI that the rotation commands need (config secrets, stack state)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rotation.errors import BadInput, CheckFailed

CONFIG_NAMESPACE = "tradepulse-vault"


def pulumi_binary(why: str = "a provided secret's new value must be stored with "
                  "`pulumi config set --secret`") -> str:
    """Return the ``pulumi`` CLI or refuse with what to do (``why`` it is needed)."""
    found = shutil.which("pulumi")
    if found is None:
        raise BadInput(
            f"no Pulumi CLI on PATH: {why}, which needs it; nothing was changed",
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


def _run(root: Path, args: list[str], what: str, backend: str,
         stdin: str | None = None) -> str:
    binary = pulumi_binary("the stack's state is read and written with `pulumi stack "
                           "export` and `pulumi stack import`")
    proc = subprocess.run([binary, *args, "--non-interactive"], input=stdin,
                          capture_output=True, text=True, cwd=root, timeout=300, check=False,
                          env={**os.environ, "PULUMI_BACKEND_URL": backend})
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"{what} failed: {detail[0][:300]}; nothing was changed")
    return proc.stdout


def export_deployment(root: Path, stack: str, backend: str) -> dict[str, Any]:
    """``pulumi stack export --show-secrets``: the stack's state, held in memory only."""
    text = _run(root, ["stack", "export", "--show-secrets", "--stack", stack],
                f"pulumi stack export --stack {stack}", backend)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise CheckFailed(f"pulumi stack export --stack {stack} printed no JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("deployment"), dict):
        raise CheckFailed(f"pulumi stack export --stack {stack}: no deployment in its output")
    return doc


def import_deployment(root: Path, stack: str, backend: str, doc: dict[str, Any]) -> None:
    """``pulumi stack import`` from stdin (Pulumi encrypts the secrets again)."""
    _run(root, ["stack", "import", "--stack", stack], f"pulumi stack import --stack {stack}",
         backend, stdin=json.dumps(doc))
