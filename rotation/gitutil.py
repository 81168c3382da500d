"""The few git questions the rotation commands ask (via the ``git`` CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infra.redact import describe
from rotation.errors import BadInput


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=check, timeout=30)
    except FileNotFoundError:
        raise BadInput("git is not installed") from None
    except subprocess.CalledProcessError as exc:
        raise BadInput(f"git {' '.join(args[:2])} failed: {exc.stderr.strip()[:200]}") from None


def is_dirty(root: Path, path: Path) -> bool:
    """Return whether ``path`` has uncommitted changes (or is untracked)."""
    out = _git(root, "status", "--porcelain", "--", str(path.relative_to(root)))
    return bool(out.stdout.strip())


def show(root: Path, rev: str, path: str) -> str | None:
    """Return ``path`` as of ``rev``, or None if it did not exist there.

    :class:`BadInput` when git fails or the content is not UTF-8 text.
    """
    try:
        out = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"],
                             capture_output=True, check=False, timeout=30)
    except FileNotFoundError:
        raise BadInput("git is not installed") from None
    stderr = out.stderr.decode("utf-8", "replace")
    if out.returncode != 0:
        if "exists on disk, but not in" in stderr or "does not exist in" in stderr:
            return None
        raise BadInput(f"git show {rev}:{path} failed: {stderr.strip()[:200]}")
    try:
        return out.stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path} at {rev[:12]} is not UTF-8 text ({exc.reason} at byte "
                       f"{exc.start})") from None


def rev_parse(root: Path, rev: str) -> str:
    """Return the full commit id of ``rev``; :class:`BadInput` naming it if unknown."""
    out = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if out.returncode != 0:
        raise BadInput(f"unknown git revision {describe(rev)} in {root}")
    return out.stdout.strip()


def config_value(root: Path, key: str) -> str | None:
    """Return ``git config <key>`` or None."""
    out = _git(root, "config", "--get", key, check=False)
    return out.stdout.strip() or None
