"""The few git questions the rotation commands ask (via the ``git`` CLI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kernel.redact import describe
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


def show_many(root: Path, rev: str, paths: list[str]) -> dict[str, bytes | None]:
    """Return each of ``paths`` as of ``rev`` (bytes; None if it did not exist there).

    One ``git cat-file --batch`` for all of them, where :func:`show` is one process
    per file: a plan reads every policy file at two revisions. A name with a newline
    cannot go through the batch's line protocol and is read with :func:`show`.
    """
    batch = [p for p in paths if "\n" not in p]
    out: dict[str, bytes | None] = {}
    if batch:
        try:
            proc = subprocess.run(["git", "-C", str(root), "cat-file", "--batch"],
                                  input="".join(f"{rev}:{p}\n" for p in batch).encode(),
                                  capture_output=True, check=False, timeout=30)
        except FileNotFoundError:
            raise BadInput("git is not installed") from None
        except subprocess.TimeoutExpired:
            raise BadInput(f"git cat-file --batch at {rev[:12]} took over 30 s") from None
        if proc.returncode != 0:
            raise BadInput(f"git cat-file --batch at {rev[:12]} failed: "
                           f"{proc.stderr.decode('utf-8', 'replace').strip()[:200]}")
        out.update(_batch_objects(proc.stdout, batch, rev))
    for path in paths:
        if path not in out:
            text = show(root, rev, path)
            out[path] = None if text is None else text.encode("utf-8")
    return out


def _batch_objects(data: bytes, paths: list[str], rev: str) -> dict[str, bytes | None]:
    """Split ``git cat-file --batch`` output into each path's content (None: not a file).

    Per path git writes a header ``<oid> <type> <size>``, a newline, the content and a
    newline; or ``<name> missing`` (or ``ambiguous``). Only a blob is a file's content:
    a tree at that path is None and its content skipped. Output that ends early or does
    not follow the protocol is :class:`BadInput`, never a misread file.
    """
    out: dict[str, bytes | None] = {}
    at = 0
    for path in paths:
        end = data.find(b"\n", at)
        if end == -1:
            raise BadInput(f"git cat-file --batch at {rev[:12]} ended before {describe(path)}")
        header = data[at:end].split()
        at = end + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            if at + size > len(data):
                raise BadInput(f"git cat-file --batch at {rev[:12]} ended inside "
                               f"{describe(path)}")
            out[path] = data[at:at + size] if header[1] == b"blob" else None
            at += size + 1
        elif len(header) == 2 and header[1] in (b"missing", b"ambiguous"):
            out[path] = None
        else:
            raise BadInput(f"git cat-file --batch at {rev[:12]}: unexpected header for "
                           f"{describe(path)}")
    return out


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


def merge_base(root: Path, base: str, head: str) -> str:
    """Return the merge base of ``base`` and ``head``: where a pull request's diff starts.

    A pull request is judged by what it changes (three-dot ``base...head``),
    never by the difference to the current tip of ``base``, which moves while
    the branch is open. :class:`BadInput` if the two share no history.
    """
    base_id, head_id = rev_parse(root, base), rev_parse(root, head)
    out = _git(root, "merge-base", base_id, head_id, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise BadInput(f"{base!r} and {head!r} share no history in {root}: no merge base "
                       "(fetch the base branch with full history: fetch-depth: 0)")
    return out.stdout.strip().splitlines()[0]


def changed_files(root: Path, base: str, head: str | None) -> list[tuple[str, str, str | None]]:
    """Return ``(status, path, old_path)`` for every file that differs from ``base`` to ``head``.

    ``head`` None compares with the working tree (tracked files only); renames
    are detected (status ``R``, ``old_path`` set).
    """
    args = ["diff", "--name-status", "-M", "--no-color", "-z", base]
    if head is not None:
        args.append(head)
    out = _git(root, *args, "--")
    fields = out.stdout.split("\0")
    result: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(fields) and fields[i]:
        status = fields[i][0]
        if status in {"R", "C"}:
            result.append((status, fields[i + 2], fields[i + 1]))
            i += 3
        else:
            result.append((status, fields[i + 1], None))
            i += 2
    return result


def ls_tree(root: Path, rev: str, folder: str = "") -> list[str]:
    """Return the file names at ``rev`` directly under ``folder`` (repository-relative paths)."""
    out = _git(root, "ls-tree", "--name-only", rev, *([f"{folder.rstrip('/')}/"] if folder
                                                          else []))
    return out.stdout.splitlines()


def log_contains(root: Path, rev: str, path: str, needle: str) -> list[str]:
    """Return the commits up to ``rev`` that added or removed ``needle`` in ``path``."""
    out = _git(root, "log", "--format=%H", f"-S{needle}", rev, "--", path)
    return out.stdout.split()
