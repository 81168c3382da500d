"""``bump --stack ENV ID``: raise one credential's declared version by exactly one.

The credential is a KV v2 static secret (``<mount>/<path>``) or any other
class of :mod:`kernel.spec.credentials`: a JWT issuer key
(``identity/oidc/key/<name>``), the database root credential
(``<mount>/config/<connection>``), a database static role
(``<mount>/static-roles/<name>``) or a role's lease generation
(``<mount>/roles/<role>``); for those the apply performs the rotation.

That one-line diff to ``Pulumi.<env>.yaml`` is the rotation: the pull request
reviews it, CI previews it, ``pulumi up`` applies it with ``cas = N - 1``.
For a ``provided`` secret the new value is read from stdin (``--value-stdin``)
or an environment variable (``--value-env``) - never an argument - and stored
as the stack's encrypted config with ``pulumi config set --secret`` first; if
anything fails, the stack file is restored byte for byte.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from kernel import paths
from kernel.redact import describe
from kernel.secret_values import SecretValueError, check_keys
from kernel.spec.credentials import Credential, credential, credentials
from kernel.spec.model import StaticSecret
from rotation import gitutil
from rotation.due_bumps import bump_due
from rotation.errors import BadInput
from rotation.output import Result, log
from rotation.progress import StatusLine
from rotation.pulumi_cli import set_secret_config
from rotation.secret_edits import refuse_second_bump
from rotation.stackedit import (
    bump_credential_text,
    bump_document,
    bump_version_text,
    clean_reason,
    clean_ticket,
    validate_text,
    write_stack_text,
)
from rotation.stacks import add_stack_arguments, load_stack, read_stack, repo_root, targets
from rotation.usage import suggest

NAME = "bump"
HELP = "raise a credential's declared version by one in Pulumi.<stack>.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register bump's arguments."""
    add_stack_arguments(parser, allow_all=True)
    parser.add_argument("secret", metavar="ID", nargs="?", help="credential id: a KV secret "
                        "<mount>/<path> (e.g. secret/services/execution/broker-api), "
                        "identity/oidc/key/<name>, <db>/config/<connection>, "
                        "<db>/static-roles/<name> or <db>/roles/<role> (its lease generation)")
    parser.add_argument("--reason", help="why (kept as a comment on the version line; the "
                        "plan and the record show it)")
    parser.add_argument("--ticket", help="the rotation ticket, e.g. SEC-123 (kept beside the "
                        "reason; the plan and the record show it)")
    parser.add_argument("--due", action="store_true",
                        help="instead of ID: bump every generated secret and credential past "
                        "its rotation interval (with --stack or --all; needs --reason), list "
                        "the provided ones that need their owners")
    parser.add_argument("--now", help="with --due: evaluate due dates at this ISO 8601 time")
    value = parser.add_mutually_exclusive_group()
    value.add_argument("--value-stdin", action="store_true",
                       help="provided secrets: read the new value from stdin (at a terminal: "
                       "a prompt, input hidden)")
    value.add_argument("--value-env", metavar="VAR",
                       help="provided secrets: read the new value from this variable")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="allow a stack file with uncommitted changes (batch bumps of "
                        "other secrets; a secret already bumped is still refused)")


def _read_stdin(secret: StaticSecret) -> str:
    """Read the new value from stdin; at a terminal, prompt for it without echo."""
    if not sys.stdin.isatty():
        return sys.stdin.read()
    wanted = (f"a JSON object with keys {', '.join(secret.keys)}" if len(secret.keys) > 1
              else f"the value of {secret.keys[0]}")
    # getpass writes the prompt to the terminal and turns echo off while reading.
    return getpass.getpass(f"New value for {secret.id} ({wanted}; input hidden, Enter "
                           "ends it): ", stream=sys.stderr)


def _new_value(secret: StaticSecret, args: argparse.Namespace, source: str) -> str:
    if args.value_stdin:
        raw = _read_stdin(secret)
        origin = "stdin"
    elif args.value_env:
        if args.value_env not in os.environ:
            raise BadInput(f"--value-env: environment variable {args.value_env} is not set")
        raw = os.environ[args.value_env]
        origin = f"${args.value_env}"
    else:
        raise BadInput(
            f"{secret.id} is a provided secret: give its new value with --value-stdin or "
            "--value-env VAR (never as an argument)")
    raw = raw.rstrip("\n")
    if not raw:
        raise BadInput(f"{origin}: the new value is empty")
    try:
        data = json.loads(raw) if raw.lstrip().startswith("{") else None
    except json.JSONDecodeError:
        raise BadInput(f"{origin}: looks like JSON but does not parse") from None
    if data is None:
        if len(secret.keys) != 1:
            raise BadInput(f"{origin}: {secret.id} has keys {list(secret.keys)}; give a JSON "
                           "object with exactly those keys")
        data = {secret.keys[0]: raw}
    try:
        value = check_keys(secret.id, secret.keys, data, f"{source}: {origin}")
    except SecretValueError as exc:
        raise BadInput(str(exc)) from None
    return json.dumps(value, sort_keys=True)


def _bump_credential(
    args: argparse.Namespace, root: Path, path: Path, cred: Credential, original: str
) -> Result:
    """Bump a JWT key, root credential, static role or lease generation (no value involved)."""
    source = path.name
    if args.value_stdin or args.value_env:
        raise BadInput(f"{cred.id} is a {cred.kind}: Vault generates the new credential, it "
                       "takes no value")
    new_text, old, new = bump_credential_text(original, cred, source, reason=args.reason,
                                              ticket=args.ticket)
    validate_text(new_text, source, args.stack, paths.policy_dir(root))
    write_stack_text(path, new_text)
    action = cred.action.replace(f"version {cred.version}", f"version {new}")
    payload = {"ok": True, "stack": args.stack, "file": source, "secret": cred.id,
               "kind": cred.kind, "field": cred.field, "old_version": old, "new_version": new,
               "apply": action, "consumers": list(cred.consumers), "reload": cred.reload,
               "value_stored": False}

    def render(out: TextIO) -> None:
        out.write(f"{source}: {cred.id} ({cred.kind}) {cred.field} {old} -> {new}\n")
        out.write(f"pulumi up will: {action}\n")
        out.write(f"consumers to reload: {', '.join(cred.consumers) or 'none'} ({cred.reload})\n")
        out.write("next: commit, open a PR (python -m rotation plan), pulumi up after review\n")

    return Result(payload, render)


def _run_due(args: argparse.Namespace) -> Result:
    """``bump --due``: everything overdue, one edit per stack file (:mod:`rotation.due_bumps`)."""
    if args.secret is not None:
        raise BadInput("bump --due takes no ID: it bumps every overdue secret it may")
    if not args.reason:
        raise BadInput("bump --due needs --reason (the PR and the record show it)")
    if args.value_stdin or args.value_env:
        raise BadInput("bump --due takes no value: provided secrets are listed for their owners")
    result = bump_due(repo_root(args.repo), targets(args), args)
    payload = {"ok": True, **vars(result)}

    def render(out: TextIO) -> None:
        out.write(f"bump --due at {result.now}: {len(result.bumped)} bumped"
                  f"{' in ' + ', '.join(result.files) if result.files else ''}\n")
        for row in result.bumped:
            out.write(f"  {row['stack']} {row['id']} ({row['kind']}) {row['old_version']} -> "
                      f"{row['new_version']}\n")
        for row in result.needs_owner:
            out.write(f"needs its owners ({', '.join(row['consumers'])}): {row['stack']} "
                      f"{row['id']}: {row['how']}\n")
        for row in result.blocked:
            out.write(f"blocked: {row['stack']} {row['id']}: {row['why']}\n")
        if result.bumped:
            out.write("next: commit the stack files as one commit and open the PR "
                      "(python -m rotation plan for its body)\n")

    return Result(payload, render)


def run(args: argparse.Namespace) -> Result:
    """Bump one credential's version (``--due``: every overdue one)."""
    if args.due:
        return _run_due(args)
    if args.all or args.now or args.secret is None:
        raise BadInput("bump needs --stack and an ID (--all and --now go with --due)")
    return _run_one(args)


def _run_one(args: argparse.Namespace) -> Result:
    """Bump the version; for provided secrets store the new value first."""
    root = repo_root(args.repo)
    document = read_stack(root, args.stack)  # the one parse of the file this bump edits
    spec = load_stack(root, args.stack, document=document)
    path = paths.stack_file(args.stack, root)
    source = path.name
    secret = spec.secret(args.secret)
    other = credential(spec, args.secret)
    if secret is None and other is None:
        ids = [c.id for c in credentials(spec)]
        guess = suggest(args.secret, ids)
        hint = f"did you mean {guess!r}? " if guess else ""
        raise BadInput(f"{source}: unknown secret {describe(args.secret)} ({hint}declared: "
                       f"{', '.join(ids) or 'none'})")
    dirty = gitutil.is_dirty(root, path)
    if dirty and not args.allow_dirty:
        raise BadInput(f"{source} has uncommitted changes; commit or stash them first "
                       "(one reviewed diff per rotation), or pass --allow-dirty")
    if secret is None:
        assert other is not None
        return _bump_credential(args, root, path, other, document.text)
    original = document.text
    if dirty:
        refuse_second_bump(root, source, secret)
    bumped = bump_document(document, secret.id, source, reason=args.reason,
                           ticket=args.ticket)
    new_text, old, new = bumped.text, bumped.old_version, bumped.new_version
    validate_text(new_text, source, args.stack, paths.policy_dir(root),
                  document=bumped.document)
    value = None
    if secret.source == "provided":
        value = _new_value(secret, args, source)
    elif args.value_stdin or args.value_env:
        raise BadInput(f"{secret.id} is {secret.source}: it takes no value")
    try:
        if value is not None:
            assert secret.config_secret is not None
            with StatusLine() as status:  # pulumi takes a few seconds: say what it does
                status.update(f"storing the new value of {secret.id} as encrypted config "
                              f"{secret.config_secret} (pulumi config set --secret)")
                set_secret_config(root, args.stack, secret.config_secret, value)
            log.info("stored the new value of %s as encrypted config %s", secret.id,
                     secret.config_secret)
            # pulumi rewrote the file (ciphertext); bump on top of what it wrote.
            new_text, old, new = bump_version_text(path.read_text(encoding="utf-8"), secret.id,
                                                   source, reason=args.reason,
                                                   ticket=args.ticket)
        write_stack_text(path, new_text)
    except BaseException:
        write_stack_text(path, original)
        raise
    payload = {"ok": True, "stack": args.stack, "file": source, "secret": secret.id,
               "old_version": old, "new_version": new, "cas": new - 1, "source": secret.source,
               "consumers": list(secret.consumers), "value_stored": value is not None,
               "reason": clean_reason(args.reason) if args.reason else None,
               "ticket": clean_ticket(args.ticket) if args.ticket else None}

    def render(out: TextIO) -> None:
        out.write(f"{source}: {secret.id} version {old} -> {new} (apply writes cas={new - 1})\n")
        if value is not None:
            out.write(f"new value stored as encrypted config {secret.config_secret}\n")
        out.write(f"consumers to reload: {', '.join(secret.consumers) or 'none'}\n")
        out.write("next: commit, open a PR (python -m rotation plan), pulumi up after review\n")

    return Result(payload, render)
