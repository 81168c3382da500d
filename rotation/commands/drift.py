"""``drift``: declared static-secret versions against live KV v2 ``current_version``.

For every static secret of the stack(s) the live metadata is read (never the
data) concurrently - 8 worker threads, one keep-alive connection each (``rotation.live``) -
with a progress bar on stderr when stderr is a terminal. Each secret is one of:

* ``in_sync``      live version == declared version
* ``pending``      declared ahead of live: bumped here, not applied yet
* ``drifted``      live ahead of declared: written outside this repository
* ``missing``      not in Vault at all
* ``lagging_prod`` a dr mirror (``mirror_of: prod``) behind the version
  ``Pulumi.prod.yaml`` declares

A mirror's declared version is its origin stack's declared version. The
declared-versions and concurrent-read helpers here are shared with ``due``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from kernel.redact import display_url
from kernel.spec.credentials import credentials
from rotation import stacks, tables
from rotation.errors import EXIT_VAULT_UNAVAILABLE, BadInput, CheckFailed
from rotation.kv import LiveMetadata
from rotation.live.declared import Declared
from rotation.live.scan import paths_exist
from rotation.output import Result
from rotation.reachable import declared_secrets, read_reachable, unreachable_lines
from rotation.rollback import previous_kept, previous_note
from rotation.tables import TableData
from rotation.timefmt import rfc3339, rfc3339_or_none

NAME = "drift"
HELP = "compare declared static-secret versions with live KV v2 versions"

IN_SYNC = "in_sync"
PENDING = "pending"
DRIFTED = "drifted"
MISSING = "missing"
LAGGING_PROD = "lagging_prod"
STATES = (IN_SYNC, PENDING, DRIFTED, MISSING, LAGGING_PROD)
FAILING = frozenset({DRIFTED, MISSING, LAGGING_PROD})


DESCRIPTION = """\
Compare each static secret's declared version (Pulumi.<stack>.yaml) with the
live KV v2 current_version, reading metadata only (never values), concurrently.

states:
  in_sync       live version == declared version
  pending       declared ahead of live: bumped in the repo, `pulumi up` not run yet
  drifted       live ahead of declared: someone wrote it outside this repository
  missing       the secret does not exist in Vault
  lagging_prod  a dr mirror (mirror_of: prod) behind the version Pulumi.prod.yaml
                declares (a mirror's declared version is prod's)

Exit 1 if anything is drifted, missing or lagging_prod. `pending` alone exits 0
(it is the normal state between merging a bump and applying it) but is reported;
--fail-on-pending makes it exit 1 too (e.g. in CI right after `pulumi up`).
"""


def classify(d: Declared, live: LiveMetadata | None) -> str:
    """Return the drift state of one secret."""
    if live is None or live.current_version == 0:
        return MISSING
    if d.version is None:  # the schema requires one; never guess a state without it
        raise BadInput(f"{d.declared_in}: {d.secret.id} declares no version")
    if live.current_version == d.version:
        return IN_SYNC
    if live.current_version > d.version:
        return DRIFTED
    return LAGGING_PROD if d.secret.mirror_of is not None else PENDING


def _note(state: str, d: Declared, live: LiveMetadata | None,
          origin_live: int | None) -> str:
    if state == MISSING:
        return "not in Vault: apply the stack (or restore the secret)"
    assert live is not None
    if state == PENDING:
        return f"v{d.version} declared, not applied yet: run pulumi up"
    if state == DRIFTED:
        updated = live.updated_time
        when = f" at {rfc3339(updated)}" if updated else ""
        return (f"live v{live.current_version} ahead of declared v{d.version}: written "
                f"outside this repo{when}")
    if state == LAGGING_PROD:
        extra = f" (live there: v{origin_live})" if origin_live is not None else ""
        return (f"{d.stack} at v{live.current_version}, {d.declared_in} declares "
                f"v{d.version}{extra}: apply {d.stack}")
    return ""


def drift_report(declared: Sequence[Declared],
                 live: dict[tuple[str, str], LiveMetadata | None],
                 now: datetime | None = None) -> list[dict[str, Any]]:
    """One JSON-able row per secret, in stack-file order (``now``: for a kept previous value)."""
    now = now or datetime.now(UTC)
    rows = []
    for d in declared:
        meta = live.get(d.key)
        state = classify(d, meta)
        updated = meta.updated_time if meta else None
        kept = previous_kept(d.secret, meta, now)
        origin_live: int | None = None
        if d.secret.mirror_of is not None:
            origin_meta = live.get((d.secret.mirror_of, d.secret.id))
            origin_live = origin_meta.current_version if origin_meta else None
        rows.append({
            "stack": d.stack,
            "address": display_url(d.vault.address),
            "id": d.secret.id,
            "mount": d.secret.mount,
            "path": d.secret.path,
            "source": d.secret.source,
            "declared_version": d.version,
            "declared_in": d.declared_in,
            "live_version": meta.current_version if meta else None,
            "live_updated_time": rfc3339_or_none(updated, exact=True),
            "mirror_of": d.secret.mirror_of,
            "origin_live_version": origin_live,
            "state": state,
            "note": _note(state, d, meta, origin_live) + previous_note(kept),
            "previous_kept": kept,
        })
    return rows


_STYLE = {IN_SYNC: "green", PENDING: "yellow", DRIFTED: "red", MISSING: "red",
          LAGGING_PROD: "red"}


def render_rows(rows: list[dict[str, Any]], summary: dict[str, int],
                failing: Iterable[str],
                unreachable: Sequence[dict[str, str]] = ()) -> Callable[[TextIO], None]:
    """Return the text renderer: the table (see :mod:`rotation.tables`) and a summary line."""
    failing = frozenset(failing)

    def render(out: TextIO) -> None:
        data = TableData("static secret drift",
                         ["stack", "secret", "declared", "live", "state", "note"], key_columns=5)
        for row in rows:
            live = "-" if row["live_version"] is None else str(row["live_version"])
            declared = str(row["declared_version"])
            if row["mirror_of"]:
                declared += f" ({row['mirror_of']})"  # a mirror's version is its origin's
            data.add([row["stack"], row["id"], declared, live, row["state"],
                      row["note"]], style=_STYLE[row["state"]])
        tables.render(data, out)
        for line in unreachable_lines(unreachable):
            tables.write_line(out, line)
        parts = ", ".join(f"{summary[s]} {s}" for s in STATES)
        verdict = "FAIL" if unreachable or any(summary[s] for s in failing) else "ok"
        tables.write_line(out, f"drift {verdict}: {parts}" + (
            f", {len(unreachable)} stack(s) unreachable" if unreachable else ""))

    return render


PRESENT, UNREADABLE = "present", "unreadable"


def credential_drift(targets: Sequence[stacks.StackTarget]) -> list[dict[str, Any]]:
    """Rows for the non-KV credentials: whether each exists in Vault (its id is its path).

    Vault keeps no version of a JWT key, root credential, static role or lease
    generation, so drift cannot compare one; an unapplied bump of those shows in
    ``pulumi preview`` (the rotation Endpoint's update). What drift can observe is
    whether the credential exists (or that the token may not read it); that is
    reported beside the verdict and never counted as in sync.
    """
    rows = []
    for target in targets:
        creds = [c for c in credentials(target.spec) if c.kind != "kv"]
        found = paths_exist(target.vault, [c.id for c in creds])  # concurrently
        for cred in creds:
            exists = found[cred.id]
            if isinstance(exists, CheckFailed):
                state, note = UNREADABLE, f"not observed: the token may not read {cred.id}"
            elif isinstance(exists, BaseException):
                raise exists
            elif exists:
                state, note = PRESENT, (f"exists; Vault keeps no version of a {cred.kind} "
                                        f"({cred.field} {cred.version} is applied by pulumi up)")
            else:
                state, note = MISSING, "not in Vault: apply the stack"
            rows.append({"stack": target.name, "id": cred.id, "kind": cred.kind,
                         "declared_version": cred.version, "state": state, "note": note})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register drift's arguments."""
    parser.description = DESCRIPTION
    stacks.add_stack_arguments(parser, allow_all=True)
    parser.add_argument("--fail-on-pending", action="store_true",
                        help="exit 1 on pending secrets too (default: pending is reported, "
                             "exit 0)")


def run(args: argparse.Namespace) -> Result:
    """Read live versions and classify every declared static secret."""
    targets, declared = declared_secrets(args)
    live, unreachable = read_reachable(targets, declared, "drift: reading KV metadata")
    down = {u["stack"] for u in unreachable}
    rows = drift_report([d for d in declared if d.stack not in down], live)
    summary = {state: sum(1 for r in rows if r["state"] == state) for state in STATES}
    failing = set(FAILING) | ({PENDING} if args.fail_on_pending else set())
    others = credential_drift([t for t in targets if t.name not in down])
    ok = not any(summary[s] for s in failing) and not unreachable
    payload = {
        "ok": ok,
        "stacks": [{"stack": t.name, "address": display_url(t.vault.address),
                    "address_from": t.address_from, "reachable": t.name not in down}
                   for t in targets],
        "summary": summary,
        "failing_states": sorted(failing),
        "secrets": rows,
        "unreachable": unreachable,
        "credentials": others,  # existence only; not part of the verdict
    }
    code = EXIT_VAULT_UNAVAILABLE if unreachable else (0 if ok else 1)
    render = render_rows(rows, summary, failing, unreachable)

    def render_all(out: TextIO) -> None:
        render(out)
        if others:
            data = TableData("other credentials", ["stack", "credential", "state", "kind",
                                                   "declared", "note"], key_columns=3)
            for row in others:
                data.add([row["stack"], row["id"], row["state"], row["kind"],
                          str(row["declared_version"]), row["note"]])
            tables.render(data, out)
            tables.write_line(out, "other credentials are not in the verdict: Vault keeps no "
                              "version of them (pulumi preview shows an unapplied bump)")

    return Result(payload, render_all, exit_code=code)
