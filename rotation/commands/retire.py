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

from infra import paths
from infra.redact import describe
from infra.spec.model import PREVIOUS_SUFFIX
from rotation import gitutil
from rotation.commands.bump import refuse_second_bump
from rotation.errors import BadInput
from rotation.output import Result
from rotation.stackedit import (
    clean_reason,
    clean_ticket,
    retire_document,
    validate_text,
    write_stack_text,
)
from rotation.stacks import load_stack, read_stack, repo_root

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
    root = repo_root(args.repo)
    document = read_stack(root, args.stack)
    spec = load_stack(root, args.stack, document=document)
    path = paths.stack_file(args.stack, root)
    source = path.name
    secret = spec.secret(args.secret)
    if secret is None:
        raise BadInput(f"{source}: unknown static secret {describe(args.secret)} (declared: "
                       f"{', '.join(s.id for s in spec.static_secrets) or 'none'})")
    dirty = gitutil.is_dirty(root, path)
    if dirty and not args.allow_dirty:
        raise BadInput(f"{source} has uncommitted changes; commit or stash them first "
                       "(one reviewed diff per change), or pass --allow-dirty")
    if dirty:
        refuse_second_bump(root, source, secret)
    bumped = retire_document(document, secret.id, source, reason=args.reason,
                             ticket=args.ticket)
    validate_text(bumped.text, source, args.stack, root / "policies" / "acl",
                  document=bumped.document)
    write_stack_text(path, bumped.text)
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
