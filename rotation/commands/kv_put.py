"""``kv-put``: the runbook's manual CAS write, for secrets this repository does NOT own.

Values come only from environment variables (``--set KEY=ENVVAR``) or a JSON
object on stdin (``--stdin-json``), never from the command line. A path that
any ``Pulumi.<stack>.yaml`` in the repository declares under
``static_secrets`` is refused (exit 2): those rotate through ``bump`` and a
reviewed diff. The write itself is :func:`rotation.kvwrite.cas_put`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, TextIO

import hvac

from kernel.redact import describe, display_url
from rotation import kvwrite, stacks
from rotation.cluster import follow_active
from rotation.errors import BadInput
from rotation.output import Result
from rotation.vault import VaultTarget, connect

NAME = "kv-put"
HELP = "check-and-set write of a KV v2 secret this repository does not own (merge-retry)"

DESCRIPTION = """\
Check-and-set write of a KV v2 secret this repository does NOT own (the
runbook's manual path; repo-owned secrets rotate with `bump` and a reviewed PR).

Values are never taken from the command line: `--set KEY=ENVVAR` reads KEY's
value from environment variable ENVVAR; `--stdin-json` reads a JSON object of
string values from stdin. Keys not named keep their current values.

The write carries cas=<version read> (cas=0 creates). It goes to the active
node (a standby given as the address is followed: its reads can lag). If another writer got
in first, the latest version is re-read: when none of our keys changed there,
our keys are merged onto it and the write is retried (at most --retries
times); when one of our keys changed on both sides, nothing is written
(exit 1) and the key names and versions are reported. A write whose answer
is lost (the active node died mid-request) is never blindly repeated: the
secret is re-read and the write counts as done if version <cas>+1 is ours.
--unavailable-timeout keeps retrying through a leader election. Output:
path, old and new version, names of the keys changed, attempts. Never a value.
"""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_RETRIES = 100
_MAX_UNAVAILABLE_SECONDS = 5 * 60.0  # 5m: the runbook escalates past this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register kv-put's arguments."""
    parser.description = DESCRIPTION
    stacks.add_address_arguments(parser, repo=False)
    parser.add_argument("--mount", default="secret", help="KV v2 mount (default: secret)")
    parser.add_argument("--path", required=True, help="secret path under the mount, "
                        "e.g. services/x (no data/ prefix)")
    parser.add_argument("--token-env", default="VAULT_TOKEN",
                        help="variable holding the token (default: VAULT_TOKEN)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--set", dest="sets", action="append", metavar="KEY=ENVVAR",
                        help="set KEY to the value of environment variable ENVVAR (repeatable)")
    source.add_argument("--stdin-json", action="store_true",
                        help="read a JSON object {KEY: value, ...} from stdin")
    parser.add_argument("--retries", type=int, default=3,
                        help="merge-retry rounds after a CAS conflict (default: 3)")
    parser.add_argument("--unavailable-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="keep retrying this long while Vault is unavailable, e.g. a "
                             "leader election (default: 0, fail at once with exit 3)")
    parser.add_argument("--repo", type=Path,
                        help="repository whose stack files define owned paths "
                             "(default: git top level)")


def normalise(mount: str, path: str) -> tuple[str, str]:
    """Strip slashes; refuse an empty path or the API's ``data/`` prefix."""
    mount = mount.strip("/")
    path = path.strip("/")
    if not mount or not path:
        raise BadInput("--mount and --path must not be empty")
    if path == "data" or path.startswith(("data/", "metadata/")):
        raise BadInput(f"--path {describe(path)} starts with the KV v2 API prefix",
                       hint="give the secret's path without data/ (e.g. --path services/x)")
    return mount, path


def owners(root: Path, mount: str, path: str) -> list[str]:
    """Return the stack files that declare ``mount/path`` as a static secret.

    With no stack file at all the ownership cannot be checked, so that is an
    error rather than a pass.
    """
    names = stacks.stack_names(root)
    if not names:
        raise BadInput(f"no Pulumi.<stack>.yaml in {root}: cannot check that {mount}/{path} "
                       "is not owned by this repository",
                       hint="run from the tradepulse-vault checkout or pass --repo")
    found = []
    for name in names:
        spec = stacks.load_stack(root, name)
        if any(s.mount == mount and s.path == path for s in spec.static_secrets):
            found.append(f"Pulumi.{name}.yaml")
    return found


def _from_env(sets: list[str]) -> dict[str, str]:
    # Never echo the text after '=': a mistaken `--set KEY=<value>` must not print the value.
    changes: dict[str, str] = {}
    for item in sets:
        key, sep, env_name = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput("--set takes KEY=ENVVAR (the value is read from environment "
                           "variable ENVVAR)")
        if key in changes:
            raise BadInput(f"--set {key}: key given twice")
        if not _ENV_NAME.match(env_name):
            raise BadInput(f"--set {key}=...: the part after '=' must be the NAME of an "
                           "environment variable (letters, digits, _), not a value",
                           hint=f"export VALUE_VAR=... and pass --set {key}=VALUE_VAR")
        value = os.environ.get(env_name)
        if not value:
            raise BadInput(f"--set {key}: the environment variable named after '=' is "
                           "unset or empty")
        changes[key] = value
    return changes


def _from_stdin(stream: TextIO) -> dict[str, str]:
    text = stream.read()
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg and the position only: the text itself may hold values.
        raise BadInput(f"--stdin-json: stdin is not valid JSON ({exc.msg} at line "
                       f"{exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict) or not doc:
        raise BadInput("--stdin-json: stdin must be a non-empty JSON object {KEY: value}")
    bad = sorted(k for k, v in doc.items() if not k or not isinstance(v, str))
    if bad:
        raise BadInput(f"--stdin-json: key(s) {', '.join(map(repr, bad))} need a string value "
                       "and a non-empty name")
    return dict(doc)


def read_changes(args: argparse.Namespace, stdin: TextIO | None = None) -> dict[str, str]:
    """Return the keys to set, from ``--set`` environment variables or JSON on stdin."""
    if args.stdin_json:
        return _from_stdin(stdin or sys.stdin)
    return _from_env(list(args.sets or []))


def run(args: argparse.Namespace) -> Result:
    """Refuse owned paths, read the values, and CAS-write with merge-retry."""
    mount, path = normalise(args.mount, args.path)
    if not 0 <= args.retries <= _MAX_RETRIES:
        raise BadInput(f"--retries must be between 0 and {_MAX_RETRIES}")
    address = stacks.stackless_address(args)
    root = stacks.repo_root(args.repo)
    owned_by = owners(root, mount, path)
    if owned_by:
        raise BadInput(
            f"{mount}/{path} is declared in static_secrets of {', '.join(owned_by)}: this "
            "repository owns it, so kv-put will not write it",
            hint=f"rotate it with `python -m rotation bump --stack <env> {mount}/{path}` and "
                 "a reviewed pull request",
        )
    if not 0 <= args.unavailable_timeout <= _MAX_UNAVAILABLE_SECONDS:
        raise BadInput("--unavailable-timeout must be between 0 and "
                       f"{_MAX_UNAVAILABLE_SECONDS:.0f} seconds (the runbook's escalation limit)")
    changes = read_changes(args)
    target = VaultTarget(address, args.token_env)

    def active_client() -> hvac.Client:
        # Reads on an OpenBao standby can lag the write just made: talk to the active node.
        return follow_active(connect(target), address)[1]

    client = kvwrite.retry_unavailable(active_client, args.unavailable_timeout)
    outcome = kvwrite.cas_put(client, mount, path, changes, retries=args.retries,
                              unavailable_timeout=args.unavailable_timeout,
                              reconnect=active_client)
    payload = {
        "ok": True,
        "address": display_url(address),
        "id": outcome.id,
        "mount": mount,
        "path": path,
        "old_version": outcome.old_version,
        "new_version": outcome.new_version,
        "created": outcome.old_version == 0 and outcome.written,
        "written": outcome.written,
        "keys_set": list(outcome.keys_set),
        "keys_changed": list(outcome.keys_changed),
        "attempts": outcome.attempts,
        "merged_over": list(outcome.merged_over),
        "unanswered_writes": outcome.unanswered_writes,
    }

    def render(out: TextIO) -> None:
        if not outcome.written:
            out.write(f"kv-put {outcome.id}: unchanged at version {outcome.new_version} "
                      f"(keys {', '.join(outcome.keys_set)} already hold these values)\n")
            return
        out.write(f"kv-put {outcome.id}: version {outcome.old_version} -> "
                  f"{outcome.new_version}\n")
        out.write(f"  keys changed: {', '.join(outcome.keys_changed)}\n")
        merged = ""
        if outcome.merged_over:
            merged = (" (merged onto version(s) "
                      f"{', '.join(map(str, outcome.merged_over))} written concurrently)")
        out.write(f"  attempts: {outcome.attempts}{merged}\n")

    return Result(payload, render)
