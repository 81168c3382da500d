"""Stack files as the rotation commands see them: locate, load, and connect.

The commands work on the checked-out repository: ``Pulumi.<stack>.yaml`` in
the repository root (``--repo`` or the current directory's git top level).
Each stack's Vault address comes from its spec; ``--address`` overrides it
(for a port-forward or a test server). The token comes from an environment
variable: ``VAULT_TOKEN_<STACK>`` if set, else ``VAULT_TOKEN`` (or
``--token-env``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hvac

from infra import paths
from infra.spec import EnvironmentSpec, SpecError, load_stack_file
from rotation.errors import BadInput
from rotation.vault import VaultTarget, connect

KNOWN_STACKS = ("prod", "staging", "dr", "local")


def repo_root(explicit: Path | None = None) -> Path:
    """Return the repository holding the stack files (``--repo``, git top level, or cwd)."""
    if explicit is not None:
        return explicit.resolve()
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        return Path(top)
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired):
        return Path.cwd()


def stack_names(root: Path) -> list[str]:
    """Return the stacks that have a ``Pulumi.<stack>.yaml`` in ``root``, sorted."""
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def load_stack(root: Path, stack: str) -> EnvironmentSpec:
    """Load and validate ``Pulumi.<stack>.yaml``; unknown stack or bad spec -> :class:`BadInput`."""
    path = paths.stack_file(stack, root)
    if not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise BadInput(f"unknown stack {stack!r}: {path.name} not found in {root} "
                       f"(stacks: {known})")
    try:
        return load_stack_file(path, policy_dir=root / "policies" / "acl")
    except SpecError as exc:
        raise BadInput(str(exc), hint="fix the stack file; nothing was changed") from None


def token_env_for(stack: str, explicit: str | None) -> str:
    """Return the environment variable holding the token for ``stack``."""
    if explicit:
        return explicit
    specific = f"VAULT_TOKEN_{stack.upper()}"
    return specific if os.environ.get(specific) else "VAULT_TOKEN"


@dataclass(frozen=True)
class StackTarget:
    """A loaded stack and how to reach its Vault."""

    name: str
    spec: EnvironmentSpec
    vault: VaultTarget

    def client(self) -> hvac.Client:
        """Return an hvac client for this stack's Vault."""
        return connect(self.vault)


def add_stack_arguments(parser: argparse.ArgumentParser, *, allow_all: bool = False) -> None:
    """Add ``--stack`` (and ``--all``), ``--repo``, ``--address`` and ``--token-env``."""
    if allow_all:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--stack", help="stack name (prod, staging, dr, local)")
        group.add_argument("--all", action="store_true", help="every stack in the repository")
    else:
        parser.add_argument("--stack", required=True, help="stack name (prod, staging, dr, local)")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--address", help="Vault address (default: the stack's vault.address)")
    parser.add_argument("--token-env", help="variable holding the token (default: "
                        "VAULT_TOKEN_<STACK> if set, else VAULT_TOKEN)")


def targets(args: argparse.Namespace) -> list[StackTarget]:
    """Resolve ``--stack``/``--all`` into loaded stacks with their Vault targets."""
    root = repo_root(args.repo)
    names = stack_names(root) if getattr(args, "all", False) else [args.stack]
    out = []
    for name in names:
        spec = load_stack(root, name)
        address = args.address or spec.vault.address
        out.append(StackTarget(name, spec, VaultTarget(address, token_env_for(name,
                                                                             args.token_env))))
    return out
