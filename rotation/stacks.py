"""Stack files as the rotation commands see them: locate, load, and connect.

The commands work on the checked-out repository: ``Pulumi.<stack>.yaml`` in
the repository root (``--repo`` or the current directory's git top level).
The Vault address follows the one rule of :mod:`rotation.address`
(``--address``, else ``VAULT_ADDR``/``BAO_ADDR``, else the stack's
``vault.address``). The token comes from an environment variable:
``VAULT_TOKEN_<STACK>`` if set, else ``VAULT_TOKEN`` (or ``--token-env``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import hvac

from kernel import paths
from kernel.redact import describe
from kernel.spec import EnvironmentSpec, SpecError, load_stack_file
from kernel.spec.loader import read_stack_document
from kernel.spec.stackfile import YamlDocument
from rotation import address as vault_address
from rotation.errors import BadInput
from rotation.vault import VaultTarget, connect


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


def load_stack(root: Path, stack: str, *, document: YamlDocument | None = None
               ) -> EnvironmentSpec:
    """Load and validate ``Pulumi.<stack>.yaml``; unknown stack or bad spec -> :class:`BadInput`.

    ``document`` is the file's parse when the caller already holds it
    (:func:`read_stack`): the file is then not read again.
    """
    path = paths.stack_file(stack, root)
    if document is None and not path.is_file():
        known = ", ".join(stack_names(root)) or "none"
        raise BadInput(f"unknown stack {describe(stack)}: {path.name} not found in {root} "
                       f"(stacks: {known})")
    try:
        return load_stack_file(path, policy_dir=paths.policy_dir(root), document=document)
    except SpecError as exc:
        raise BadInput(str(exc), hint="fix the stack file; nothing was changed") from None


def read_stack(root: Path, stack: str) -> YamlDocument:
    """Read and parse ``Pulumi.<stack>.yaml`` once, for a command that edits it too."""
    path = paths.stack_file(stack, root)
    if not path.is_file():
        load_stack(root, stack)  # raises the unknown-stack message
    try:
        return read_stack_document(path)
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
    address_from: str = "declared"

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
    parser.add_argument("--address", help="Vault address (default: $VAULT_ADDR, else "
                        "$BAO_ADDR, else the stack's vault.address)")
    parser.add_argument("--token-env", help="variable holding the token (default: "
                        "VAULT_TOKEN_<STACK> if set, else VAULT_TOKEN)")


def add_address_arguments(parser: argparse.ArgumentParser, *, repo: bool = True) -> None:
    """Add ``--address`` and an optional ``--stack`` for commands that work without a stack."""
    parser.add_argument("--address", help="Vault address (default: $VAULT_ADDR, else "
                        "$BAO_ADDR, else --stack's vault.address)")
    parser.add_argument("--stack", help="take the Vault address from this stack's "
                        "vault.address when neither --address nor VAULT_ADDR/BAO_ADDR is set")
    if repo:
        parser.add_argument("--repo", type=Path, help="repository root (default: git top "
                            "level)")


def stackless_address(args: argparse.Namespace) -> str:
    """Resolve the address of a command whose ``--stack`` is only the last fallback."""
    declared = declared_in = None
    if getattr(args, "stack", None):
        spec = load_stack(repo_root(getattr(args, "repo", None)), args.stack)
        declared, declared_in = spec.vault.address, f"Pulumi.{args.stack}.yaml"
    return vault_address.resolve(args.address, declared=declared, declared_in=declared_in).url


def targets(args: argparse.Namespace) -> list[StackTarget]:
    """Resolve ``--stack``/``--all`` into loaded stacks with their Vault targets."""
    root = repo_root(args.repo)
    names = stack_names(root) if getattr(args, "all", False) else [args.stack]
    out = []
    for name in names:
        spec = load_stack(root, name)
        found = vault_address.resolve(args.address, declared=spec.vault.address,
                                      declared_in=f"Pulumi.{name}.yaml")
        out.append(StackTarget(name, spec, VaultTarget(found.url, token_env_for(
            name, args.token_env)), found.source))
    declared = {t.spec.vault.address.rstrip("/") for t in out}
    source = out[0].address_from if out else ""
    if len(declared) > 1 and source in (vault_address.FROM_FLAG,
                                        *vault_address.ADDRESS_VARIABLES):
        undo = "drop --address" if source == vault_address.FROM_FLAG else f"unset {source}"
        raise BadInput(
            f"{source} would send all {len(out)} stacks to one Vault ({out[0].vault.address}), "
            f"but they declare {len(declared)} different addresses",
            hint=f"{undo} to use each stack's vault.address, or run one stack at a time "
                 "with --stack")
    return out
