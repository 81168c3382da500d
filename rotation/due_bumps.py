"""``bump --due``: bump, in one edit per stack file, everything past its rotation interval.

What ``due`` reports as ``overdue`` at ``--now`` is what this bumps: each
``generated`` KV secret (``bump``'s byte-exact version edit) and each other
credential class ``bump`` knows whose interval has passed (today only a
database static role can be overdue: JWT keys are rotated by Vault on their
period, the root credential and lease generations only on demand). A
``provided`` secret is listed with its consumers (its owners must supply the
value: ``bump --value-stdin``), a mirror follows prod, and a ``keep_previous``
secret that still keeps a previous value is listed as blocked (retire first).
Nothing is committed here: the caller (the ``rotation-due`` workflow, or an
operator) commits the edited stack files as one commit and opens the PR.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel import paths
from kernel.spec.credentials import credential
from rotation import gitutil
from rotation.due_dates import OVERDUE, credential_rows, due_row, parse_now
from rotation.errors import BadInput, VaultUnavailable
from rotation.reachable import declared_secrets, read_reachable
from rotation.stackedit import (
    bump_credential_text,
    bump_document,
    parse_text,
    validate_text,
    write_stack_text,
)
from rotation.stacks import StackTarget
from rotation.timefmt import rfc3339


@dataclass
class DueBumps:
    """What ``bump --due`` did and what it left to people."""

    now: str
    bumped: list[dict[str, Any]] = field(default_factory=list)
    needs_owner: list[dict[str, Any]] = field(default_factory=list)
    blocked: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _overdue(targets: list[StackTarget], args: argparse.Namespace, result: DueBumps,
             now: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Return ``({stack: kv ids}, {stack: credential ids})`` to bump; fill the lists of people."""
    _, declared = declared_secrets(args)
    live, unreachable = read_reachable(targets, declared, "bump --due: reading KV metadata")
    if unreachable:
        raise VaultUnavailable(f"bump --due needs every stack's live versions; unreachable: "
                               f"{', '.join(u['stack'] for u in unreachable)}; nothing changed")
    kv: dict[str, list[str]] = {}
    for d in declared:
        row = due_row(d, live.get(d.key), now)
        if row["state"] != OVERDUE or d.secret.mirror_of is not None:
            continue  # a mirror's rotation is prod's
        entry = {"stack": d.stack, "id": d.secret.id, "overdue_by_seconds":
                 row["overdue_by_seconds"], "consumers": list(d.secret.consumers)}
        if d.secret.source == "provided":
            result.needs_owner.append({**entry, "how": f"python -m rotation bump --stack "
                                       f"{d.stack} {d.secret.id} --value-stdin"})
        elif d.secret.previous is not None:
            result.blocked.append({**entry, "why": f"still keeps version {d.secret.previous} "
                                   "as <KEY>_PREVIOUS: retire it first"})
        else:
            kv.setdefault(d.stack, []).append(d.secret.id)
    others, _ = credential_rows(targets, now)
    creds: dict[str, list[str]] = {}
    for row in others:
        if row["state"] == OVERDUE:
            creds.setdefault(row["stack"], []).append(row["id"])
    return kv, creds


def bump_due(root: Path, targets: list[StackTarget], args: argparse.Namespace) -> DueBumps:
    """Bump every overdue secret and credential of ``targets``; write each stack file once."""
    now = parse_now(args.now)
    result = DueBumps(now=rfc3339(now, exact=True))
    for target in targets:
        path = paths.stack_file(target.name, root)
        if gitutil.is_dirty(root, path) and not args.allow_dirty:
            raise BadInput(f"{path.name} has uncommitted changes; commit or stash them first "
                           "(bump --due makes one reviewed diff), or pass --allow-dirty")
    kv, creds = _overdue(targets, args, result, now)
    edits: dict[str, tuple[Path, str]] = {}
    for target in targets:
        ids, cred_ids = kv.get(target.name, []), creds.get(target.name, [])
        if not ids and not cred_ids:
            continue
        path = paths.stack_file(target.name, root)
        source = path.name
        text = path.read_text(encoding="utf-8")
        for secret_id in ids:
            bump = bump_document(parse_text(text, source), secret_id, source,
                                 reason=args.reason, ticket=args.ticket)
            text = bump.text
            result.bumped.append({"stack": target.name, "id": secret_id, "kind": "kv",
                                  "old_version": bump.old_version,
                                  "new_version": bump.new_version})
        for cred_id in cred_ids:
            cred = credential(target.spec, cred_id)
            assert cred is not None
            text, old, new = bump_credential_text(text, cred, source, reason=args.reason,
                                                  ticket=args.ticket)
            result.bumped.append({"stack": target.name, "id": cred_id, "kind": cred.kind,
                                  "old_version": old, "new_version": new})
        validate_text(text, source, target.name, paths.policy_dir(root))
        edits[target.name] = (path, text)
    for path, text in edits.values():  # every edit validated before the first write
        write_stack_text(path, text)
        result.files.append(path.name)
    return result
