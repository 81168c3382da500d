"""Every stack's live KV metadata, read one stack at a time, past the stacks that do not answer.

What ``drift``, ``due`` and ``bump --due`` share: the declared versions of
``--stack``/``--all`` and their live metadata. A stack that cannot be reached
(or is sealed) is named and reported, not silently left out; when none
answers, its error is raised as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rotation import stacks
from rotation.errors import VaultUnavailable
from rotation.kv import LiveMetadata
from rotation.live.declared import Declared, declare
from rotation.live.scan import read_live
from rotation.output import log
from rotation.progress import progress_bar
from rotation.vault import read_token


def declared_secrets(args: argparse.Namespace) -> tuple[list[stacks.StackTarget],
                                                        list[Declared]]:
    """Resolve ``--stack``/``--all`` and every static secret's declared version."""
    targets = stacks.targets(args)
    return targets, declare(stacks.repo_root(args.repo), targets)


def read_reachable(
    targets: Sequence[stacks.StackTarget], declared: Sequence[Declared], description: str,
) -> tuple[dict[tuple[str, str], LiveMetadata | None], list[dict[str, str]]]:
    """Read every stack's live metadata, one stack at a time; keep going past unreachable ones.

    Returns the live metadata of the stacks that answered and, for each stack
    that could not be reached (or is sealed), its name, address, where the
    address came from and the error. When no stack answers, the first error is
    raised as it is (exit 3 with its hint).
    """
    for target in targets:  # a missing token variable is exit 2 before any request
        read_token(target.vault.token_env)
    live: dict[tuple[str, str], LiveMetadata | None] = {}
    unreachable: list[dict[str, str]] = []
    first: VaultUnavailable | None = None
    for target in targets:
        mine = [d for d in declared if d.stack == target.name]
        try:
            with progress_bar(f"{description} ({target.name})") as advance:
                live.update(read_live(mine, advance=advance))
        except VaultUnavailable as exc:
            first = first or exc
            unreachable.append({"stack": target.name, "address": target.vault.address,
                                "address_from": target.address_from, "error": str(exc)})
    if first is not None and len(unreachable) == len(targets):
        raise first
    for entry in unreachable:  # the others were read: report them, name these on stderr
        log.error("%s: %s", entry["stack"], entry["error"])
    return live, unreachable


def unreachable_lines(unreachable: Sequence[dict[str, str]]) -> list[str]:
    """Lines naming each stack that could not be read (printed after the table)."""
    return [f"UNREACHABLE {u['stack']}: not reported above; {u['address']} (from "
            f"{u['address_from']}) did not answer" for u in unreachable]
