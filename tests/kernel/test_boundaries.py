"""The kernel is the only thing the program, the CLI and the policy pack share.

``infra`` (the Pulumi program), ``rotation`` (the CLI) and ``tradepulse_guard``
(the CrossGuard pack) import ``kernel`` and never each other; ``kernel``
imports none of them, and neither the Pulumi SDK nor hvac. Every import is
read from the syntax tree, including the lazy ones inside functions, so a
boundary cannot be crossed quietly.

Inside the CLI, the subcommands (``rotation.commands.*``) are leaves: only
``rotation.cli`` imports them, and none imports another, so what two commands
share lives in a module of its own (``rotation.reachable``,
``rotation.due_dates``, ``rotation.secret_edits``) rather than inside one of
them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest

from tests.conftest import REPO_ROOT

PACKAGES = {
    "kernel": REPO_ROOT / "kernel",
    "infra": REPO_ROOT / "infra",
    "rotation": REPO_ROOT / "rotation",
    "tradepulse_guard": REPO_ROOT / "policies" / "guard",
}
OURS = frozenset(PACKAGES)
# What each package must not import (besides the other clients).
FORBIDDEN_LIBRARIES = {"kernel": frozenset({"pulumi", "pulumi_vault", "pulumi_kubernetes",
                                            "pulumi_random", "pulumi_policy", "hvac"})}


def imported_modules(source: str) -> Iterator[tuple[str, int]]:
    """Yield ``(module, line)`` for every absolute import in ``source``.

    ``from a.b import c`` yields both ``a.b`` and ``a.b.c`` (``c`` may be a module).
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno


def imported_tops(source: str) -> Iterator[tuple[str, int]]:
    """Yield ``(top-level module, line)`` for every absolute import in ``source``."""
    yield from dict.fromkeys((module.split(".")[0], line)
                             for module, line in imported_modules(source))


def violations(package: str, files: dict[str, str]) -> list[str]:
    """Return ``file:line: imports X`` for every import ``package`` may not make."""
    allowed = {package, "kernel"}
    found = []
    for name, source in sorted(files.items()):
        for top, line in imported_tops(source):
            if (top in OURS and top not in allowed) or top in FORBIDDEN_LIBRARIES.get(package, ()):
                found.append(f"{name}:{line}: imports {top}")
    return found


def _sources(package: str) -> dict[str, str]:
    root = PACKAGES[package]
    return {str(p.relative_to(REPO_ROOT)): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_the_kernel_across_its_boundary(package: str) -> None:
    files = _sources(package)
    assert files, f"no Python files under {PACKAGES[package]}"
    assert violations(package, files) == []


def test_the_walk_sees_lazy_imports_and_forbidden_libraries() -> None:
    lazy = "def f():\n    from rotation.kv import read\n    return read\n"
    assert violations("infra", {"infra/x.py": lazy}) == ["infra/x.py:2: imports rotation"]
    assert violations("kernel", {"kernel/x.py": "import hvac\nimport pulumi.runtime\n"}) == [
        "kernel/x.py:1: imports hvac", "kernel/x.py:2: imports pulumi"]
    assert violations("rotation", {"rotation/x.py": "from kernel.spec import parse_spec\n"}) == []


COMMANDS = "rotation.commands"


def command_violations(files: dict[str, str]) -> list[str]:
    """Return ``file:line: imports X`` for every import of a subcommand outside ``rotation.cli``."""
    found = []
    for name, source in sorted(files.items()):
        if name == "rotation/cli.py":
            continue
        hits = {}  # the first subcommand each import statement names
        for module, line in imported_modules(source):
            if module.startswith(f"{COMMANDS}."):
                hits.setdefault(line, module)
        found += [f"{name}:{line}: imports {module}" for line, module in hits.items()]
    return found


def test_subcommands_are_imported_only_by_the_cli() -> None:
    assert command_violations(_sources("rotation")) == []


def test_the_subcommand_walk_sees_both_import_forms() -> None:
    files = {"rotation/commands/due.py": "from rotation.commands.drift import read_reachable\n",
             "rotation/due_bumps.py": "def f():\n    from rotation.commands import due\n",
             "rotation/cli.py": "import rotation.commands.bump\n",
             "rotation/commands/bump.py": "from rotation.reachable import read_reachable\n"}
    assert command_violations(files) == [
        "rotation/commands/due.py:1: imports rotation.commands.drift",
        "rotation/due_bumps.py:2: imports rotation.commands.due"]
