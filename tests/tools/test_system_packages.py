"""Every executable the code runs by bare name comes from the venv, the toolchain or the list.

A new machine has only what ``tools/system-deps.sh`` installs from
``tools/system-packages.txt``; a test or benchmark that calls ``shutil.which("x")`` or
``subprocess.run(["x", ...])`` for anything else works only where someone installed ``x`` by
hand, and CI on a reused machine hides it. This test reads the source instead of running it.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_LIST = REPO_ROOT / "tools" / "system-packages.txt"
SCANNED = ("infra", "rotation", "policies", "tools", "tests", "bench")
SUBPROCESS_CALLS = {"run", "Popen", "check_output", "check_call", "call"}
# What the toolchain build (tools/toolchain/build.sh) puts in its bin directory.
TOOLCHAIN = {"pulumi", "pulumi-language-python", "pulumi-language-python-exec",
             "kube-apiserver", "kubectl"}


def listed_executables(text: str) -> set[str]:
    """Executables named by the package list (``<package> <executable>...`` per line)."""
    names: set[str] = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        names.update(words[1:])
    return names


def venv_executables() -> set[str]:
    """Console scripts and binaries the Python dependencies install (bao, ruff, ...)."""
    import sys

    return {p.name for p in Path(sys.executable).parent.iterdir()}


def _bare_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and "/" not in node.value:
        return node.value
    return None


def invoked_executables(source: str) -> set[str]:
    """Bare executable names in ``shutil.which(...)`` and ``subprocess.*([...])`` calls."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = node.args[0]
        if name == "which":
            bare = _bare_name(first)
        elif name in SUBPROCESS_CALLS and isinstance(first, ast.List) and first.elts:
            bare = _bare_name(first.elts[0])
        elif name == "_pg_run" and len(node.args) > 1 and isinstance(node.args[1], ast.List):
            bare = _bare_name(node.args[1].elts[0])  # PostgreSQL's tools, run from its bin dir
        else:
            bare = None
        if bare:
            found.add(bare)
    return found


def tracked_python_files() -> list[Path]:
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--", *SCANNED],
                         capture_output=True, check=True)
    names = [n for n in out.stdout.decode().split("\0") if n.endswith(".py")]
    return [REPO_ROOT / n for n in names if (REPO_ROOT / n).exists()]


def unlisted(available: set[str]) -> dict[str, list[str]]:
    """Executables the code invokes that are not in ``available``, with where."""
    missing: dict[str, list[str]] = {}
    for path in tracked_python_files():
        for exe in invoked_executables(path.read_text(encoding="utf-8")):
            if exe not in available:
                missing.setdefault(exe, []).append(str(path.relative_to(REPO_ROOT)))
    return missing


def test_every_invoked_executable_has_a_source() -> None:
    available = listed_executables(PACKAGE_LIST.read_text()) | venv_executables() | TOOLCHAIN
    missing = unlisted(available)
    assert not missing, (
        "executables run by the code but installed by nothing (add them to "
        f"tools/system-packages.txt): {missing}")


def test_the_check_fails_without_wrk_in_the_list() -> None:
    """The check can fail: with wrk taken out of the list, the benchmarks' use of it shows."""
    listed = listed_executables(PACKAGE_LIST.read_text())
    assert "wrk" in listed
    available = (listed - {"wrk"}) | venv_executables() | TOOLCHAIN
    missing = unlisted(available)
    assert set(missing) == {"wrk"}
    assert "bench/live_scan.py" in missing["wrk"]


def test_the_scanner_sees_each_call_shape() -> None:
    source = (
        "import shutil, subprocess\n"
        "shutil.which('etcd')\n"
        "subprocess.run(['kube-apiserver', '--version'])\n"
        "subprocess.Popen(['/usr/bin/absolute'])\n"
        "subprocess.run([sys.executable, '-m', 'x'])\n"
        "_pg_run(pg_bin, ['initdb', '-D', 'x'])\n"
    )
    assert invoked_executables(source) == {"etcd", "kube-apiserver", "initdb"}


def test_system_deps_reads_the_same_list() -> None:
    script = (REPO_ROOT / "tools" / "system-deps.sh").read_text()
    assert "system-packages.txt" in script
