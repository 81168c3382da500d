"""The guards every command that edits a KV secret's version runs before it writes.

``bump``, ``rollback`` and ``retire`` each move one secret's version by one in
a stack file that is committed (``--allow-dirty``: other edits only), never
bump the same secret twice before a commit, validate the result as a spec,
and write it atomically or not at all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from kernel import paths
from kernel.redact import describe
from kernel.spec.model import StaticSecret
from kernel.spec.stackfile import YamlDocument
from rotation import gitutil
from rotation.errors import BadInput
from rotation.planning import declared_version
from rotation.stackedit import Bump, validate_text, write_stack_text
from rotation.stacks import load_stack, read_stack, repo_root
from rotation.usage import suggest


def refuse_second_bump(root: Path, source: str, secret: StaticSecret) -> None:
    """Refuse a bump of a secret whose version already moved in the uncommitted stack file.

    Bumping twice would make 1 -> 3, a diff the plan (and CI's gate) refuses,
    and would drop the first reason. ``--allow-dirty`` is for *other* edits
    (batch bumps of different secrets), never a second bump of the same one.
    """
    try:
        gitutil.rev_parse(root, "HEAD")
    except BadInput:
        return  # no commit yet: nothing to compare with
    committed = gitutil.show(root, "HEAD", source)
    before = declared_version(committed, secret.id) if committed is not None else None
    if before is None or before == secret.version:
        return
    raise BadInput(
        f"{source}: {secret.id} is already bumped in the working tree (version {before} -> "
        f"{secret.version}, not committed); a rotation moves one version, so nothing was "
        "changed",
        hint=f"commit it and open its PR (python -m rotation plan), or `git checkout -- "
             f"{source}` to start over; --allow-dirty allows other uncommitted edits, not a "
             "second bump of the same secret")


def edit_secret(
    args: argparse.Namespace, edit: Callable[[YamlDocument, str, str], Bump]
) -> tuple[StaticSecret, Bump]:
    """Apply ``edit`` (a version +1 with a lifecycle field) to one KV secret; write the file.

    The stack file must be committed (``--allow-dirty``: other edits only), the
    result must validate as a spec, and nothing is written otherwise.
    """
    root = repo_root(args.repo)
    document = read_stack(root, args.stack)
    spec = load_stack(root, args.stack, document=document)
    path = paths.stack_file(args.stack, root)
    source = path.name
    secret = spec.secret(args.secret)
    if secret is None:
        ids = [s.id for s in spec.static_secrets]
        guess = suggest(args.secret, ids)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise BadInput(f"{source}: unknown static secret {describe(args.secret)} ({hint}"
                       f"declared: {', '.join(ids) or 'none'}); only KV secrets have a "
                       "version history")
    dirty = gitutil.is_dirty(root, path)
    if dirty and not args.allow_dirty:
        raise BadInput(f"{source} has uncommitted changes; commit or stash them first "
                       "(one reviewed diff per rotation), or pass --allow-dirty")
    if dirty:
        refuse_second_bump(root, source, secret)
    bumped = edit(document, secret.id, source)
    validate_text(bumped.text, source, args.stack, paths.policy_dir(root),
                  document=bumped.document)
    write_stack_text(path, bumped.text)
    return secret, bumped
