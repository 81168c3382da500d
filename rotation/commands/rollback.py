"""``rollback --stack ENV ID --to-version M``: restore an earlier KV version as the next one.

A rollback is a rotation like any other: the version rises by one (N -> N+1,
written with ``cas = N``), reviewed in a pull request, previewed by the gate,
applied by ``pulumi up``. The stack file records ``restores: M`` beside the
new version; the program reads version M's data from Vault's KV history at
apply time, so the value never passes through the repository, this command
or its output. The next ``bump`` of the secret removes ``restores``.

No value is taken (not even for a ``provided`` secret: its config secret
stays as it is until the next bump). Whether version M still exists in
Vault's history is ``preflight``'s check; ``verify`` proves the written data
equals version M's by comparing digests of Vault's two responses.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from kernel import paths
from rotation.output import Result
from rotation.secret_edits import edit_secret
from rotation.stackedit import (
    clean_reason,
    clean_ticket,
    rollback_document,
)
from rotation.stacks import repo_root

NAME = "rollback"
HELP = "restore an earlier KV version of a static secret as its next version (restores: M)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register rollback's arguments."""
    parser.add_argument("--stack", required=True, help="stack name (prod, staging, dr, local)")
    parser.add_argument("secret", metavar="ID", help="a KV static secret <mount>/<path>")
    parser.add_argument("--to-version", type=int, required=True, metavar="M",
                        help="the earlier KV version whose data the next version restores")
    parser.add_argument("--reason", help="why (kept as a comment on the version line; the "
                        "plan and the record show it)")
    parser.add_argument("--ticket", help="the incident or rotation ticket, e.g. INC-512")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="allow a stack file with other uncommitted changes")


def run(args: argparse.Namespace) -> Result:
    """Raise the version by one and declare ``restores: M``; nothing else changes."""
    source = paths.stack_file(args.stack, repo_root(args.repo)).name
    secret, bumped = edit_secret(args, lambda doc, sid, src: rollback_document(
        doc, sid, src, args.to_version, reason=args.reason, ticket=args.ticket))
    old, new = bumped.old_version, bumped.new_version
    payload = {"ok": True, "stack": args.stack, "file": source, "secret": secret.id,
               "old_version": old, "new_version": new, "cas": old,
               "restores": args.to_version, "source": secret.source,
               "consumers": list(secret.consumers), "value_stored": False,
               "reason": clean_reason(args.reason) if args.reason else None,
               "ticket": clean_ticket(args.ticket) if args.ticket else None}

    def render(out: TextIO) -> None:
        out.write(f"{source}: {secret.id} version {old} -> {new} restores version "
                  f"{args.to_version} (apply reads it from Vault's history, writes cas={old})\n")
        out.write(f"consumers to reload: {', '.join(secret.consumers) or 'none'}\n")
        out.write("next: commit, open a PR (python -m rotation plan), preflight, pulumi up "
                  "after review, verify\n")

    return Result(payload, render)
