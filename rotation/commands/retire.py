"""``retire --stack ENV ID``: drop the previous value a ``keep_previous`` secret still keeps.

A ``keep_previous: true`` secret's rotation writes the new value and keeps
version N's keys as ``<KEY>_PREVIOUS`` (``previous: N`` beside the version),
so verifiers and slow consumers can read both. Once every consumer reads the
new value, this second reviewed change raises the version by one with
``retired: N+1``: the apply writes version N+2 with version N+1's keys, read
back from Vault's history, and without ``<KEY>_PREVIOUS`` (``cas = N+1``). No
value is taken or shown. Until a retire, the gate refuses another rotation of
the secret (it would drop the value a consumer may still use).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from kernel import paths
from kernel.spec.model import PREVIOUS_SUFFIX
from rotation.output import Result
from rotation.secret_edits import edit_secret
from rotation.stackedit import clean_reason, clean_ticket, retire_document
from rotation.stacks import repo_root

NAME = "retire"
HELP = "drop the <KEY>_PREVIOUS value a keep_previous secret still keeps (version +1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register retire's arguments."""
    parser.add_argument("--stack", required=True, help="stack name (prod, staging, dr, local)")
    parser.add_argument("secret", metavar="ID", help="a keep_previous KV secret <mount>/<path>")
    parser.add_argument("--reason", help="why now (kept as a comment on the version line)")
    parser.add_argument("--ticket", help="the rotation ticket, e.g. SEC-123")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="allow a stack file with other uncommitted changes")


def run(args: argparse.Namespace) -> Result:
    """Raise the version by one with ``retired: N``; nothing else changes."""
    source = paths.stack_file(args.stack, repo_root(args.repo)).name
    secret, bumped = edit_secret(args, lambda doc, sid, src: retire_document(
        doc, sid, src, reason=args.reason, ticket=args.ticket))
    old, new = bumped.old_version, bumped.new_version
    payload = {"ok": True, "stack": args.stack, "file": source, "secret": secret.id,
               "old_version": old, "new_version": new, "cas": old, "retired": old,
               "dropped": [f"{k}{PREVIOUS_SUFFIX}" for k in secret.keys], "value_stored": False,
               "consumers": list(secret.consumers),
               "reason": clean_reason(args.reason) if args.reason else None,
               "ticket": clean_ticket(args.ticket) if args.ticket else None}

    def render(out: TextIO) -> None:
        out.write(f"{source}: {secret.id} version {old} -> {new} retired {old}: the apply "
                  f"rewrites version {old}'s keys without "
                  f"{', '.join(payload['dropped'])} (cas={old})\n")
        out.write("next: commit, open a PR (python -m rotation plan), pulumi up after review\n")

    return Result(payload, render)
