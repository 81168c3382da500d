"""``due``: credentials by rotation due date, soonest first; exit 1 if any is overdue.

A secret's last rotation is the creation time of its live ``current_version``
(from KV v2 metadata; ``updated_time`` only if that version's time is absent).
``updated_time`` alone would also move on a metadata-only write
(``custom_metadata``, ``max_versions``) that rotates nothing, hiding an overdue
secret. Due date = last rotation + ``rotation_interval_seconds``; a dr mirror
inherits its origin's (prod's) interval. Metadata reads are concurrent
(shared with ``drift``); values are never read.

The other credential classes are listed under ``credentials``: a database
static role is due ``rotation_period`` after Vault's ``last_vault_rotation``;
a JWT issuer key is rotated by Vault on its own period (its last rotation is
not observable, so it is shown as such); the root credential and lease
generations rotate only on a reviewed bump. Credentials that belong together
(a service's secrets and static roles, paired static roles) are staggered an
hour apart (:mod:`rotation.schedule`), and the rows say so.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from kernel.redact import describe, display_url
from kernel.spec.credentials import Credential, credentials
from rotation import stacks, tables
from rotation.commands.drift import declared_secrets, read_reachable, unreachable_lines
from rotation.credential_checks import last_vault_rotation, parse_time
from rotation.errors import EXIT_VAULT_UNAVAILABLE, BadInput
from rotation.kv import LiveMetadata
from rotation.live.declared import Declared
from rotation.output import Result
from rotation.rollback import previous_kept, previous_note
from rotation.schedule import groups, stagger
from rotation.tables import TableData
from rotation.timefmt import format_duration, rfc3339
from rotation.vault import vault_errors

NAME = "due"
HELP = "list static secrets by rotation due date (soonest first); exit 1 if any is overdue"

OVERDUE = "overdue"
OK = "ok"
MISSING = "missing"
NO_INTERVAL = "no_interval"
VAULT_MANAGED = "vault_managed"
ON_DEMAND = "on_demand"

DESCRIPTION = """\
List every static secret of the stack(s) by rotation due date, soonest first.

last rotated = creation time of the live current version (KV v2 metadata; a
metadata-only write does not count as a rotation). due = last rotated +
rotation_interval_seconds (a dr mirror inherits prod's interval). States:
overdue (past due; overdue-by shown), ok (due-in shown), missing (not in Vault:
never rotated here - run `drift`), no_interval. Missing secrets are listed after
the dated ones and do not change the exit code (drift reports them).

Exit 1 if any secret is overdue at --now (default: the current time, UTC).
"""


def parse_now(text: str | None) -> datetime:
    """Parse ``--now`` (ISO 8601; naive means UTC) or return the current UTC time."""
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--now {describe(text)} is not an ISO 8601 timestamp",
                       hint="e.g. --now 2026-01-31T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def last_rotated(meta: LiveMetadata) -> datetime | None:
    """Return the creation time of the current version (fallback: ``updated_time``)."""
    return meta.version_times.get(meta.current_version) or meta.updated_time


def due_row(d: Declared, meta: LiveMetadata | None, now: datetime) -> dict[str, Any]:
    """One JSON-able row: when ``d`` was last rotated, when it is due, and its state."""
    row: dict[str, Any] = {
        "stack": d.stack, "id": d.secret.id, "mount": d.secret.mount, "path": d.secret.path,
        "mirror_of": d.secret.mirror_of, "interval_seconds": d.interval_seconds,
        "interval_from": d.interval_in, "live_version": None, "last_rotated": None,
        "due_at": None, "overdue_by_seconds": None, "due_in_seconds": None,
        "previous_kept": None,
    }
    rotated = last_rotated(meta) if meta is not None and meta.current_version else None
    if meta is None or meta.current_version == 0 or rotated is None:
        row.update(state=MISSING, note="not in Vault (see drift)")
        return row
    row["live_version"] = meta.current_version
    row["last_rotated"] = rfc3339(rotated, exact=True)
    kept = row["previous_kept"] = previous_kept(d.secret, meta, now)
    if d.interval_seconds is None:
        row.update(state=NO_INTERVAL, note="no rotation interval declared" + previous_note(kept))
        return row
    row = _dated(row, rotated, d.interval_seconds, now)
    row["note"] += previous_note(kept)
    return row


def _dated(row: dict[str, Any], rotated: datetime, interval: int,
           now: datetime) -> dict[str, Any]:
    due_at = rotated + timedelta(seconds=interval)
    left = (due_at - now).total_seconds()
    row["due_at"] = rfc3339(due_at, exact=True)
    if left < 0:
        row.update(state=OVERDUE, overdue_by_seconds=int(-left),
                   note=f"OVERDUE by {format_duration(-left)}")
    else:
        row.update(state=OK, due_in_seconds=int(left), note=f"due in {format_duration(left)}")
    return row


def credential_row(target: stacks.StackTarget, cred: Credential, now: datetime,
                   live_rotation: str | None) -> dict[str, Any]:
    """One JSON-able row for a non-KV credential (``live_rotation``: a static role's)."""
    row: dict[str, Any] = {
        "stack": target.name, "id": cred.id, "kind": cred.kind, "field": cred.field,
        "declared_version": cred.version, "interval_seconds": cred.rotation_interval_seconds,
        "last_rotated": None, "due_at": None, "overdue_by_seconds": None,
        "due_in_seconds": None,
    }
    if cred.kind == "jwt-key":
        period = format_duration(cred.rotation_interval_seconds or 0)
        row.update(state=VAULT_MANAGED, note=f"Vault rotates it every {period} (when is not "
                   f"observable); bump {cred.field} to rotate now")
        return row
    if cred.kind != "db-static-role":
        row.update(state=ON_DEMAND, note=f"rotates only on a reviewed bump of {cred.field}")
        return row
    if live_rotation is None:
        row.update(state=MISSING, note="not in Vault (apply the stack)")
        return row
    rotated = parse_time(live_rotation)
    row["last_rotated"] = rfc3339(rotated, exact=True)
    if cred.rotation_interval_seconds is None:
        row.update(state=NO_INTERVAL, note="Vault rotates it on its rotation_schedule")
        return row
    return _dated(row, rotated, cred.rotation_interval_seconds, now)


def credential_rows(targets: list[stacks.StackTarget], now: datetime) -> tuple[
        list[dict[str, Any]], dict[tuple[str, str], set[str]]]:
    """Rows for every non-KV credential of ``targets``, and the stagger groups of all."""
    rows: list[dict[str, Any]] = []
    labels: dict[tuple[str, str], set[str]] = {}
    for target in targets:
        creds = [c for c in credentials(target.spec) if c.kind != "kv"]
        labels |= groups(target.name, target.spec, creds)
        static = [c for c in creds if c.kind == "db-static-role"]
        client = target.client() if static else None
        for cred in creds:
            live = None
            if client is not None and cred.kind == "db-static-role":
                with vault_errors(target.vault.address, f"reading {cred.id}"):
                    live = last_vault_rotation(client, cred)
            rows.append(credential_row(target, cred, now, live))
    return rows, labels


def _order(row: dict[str, Any]) -> tuple[int, datetime, str, str]:
    rank = {OVERDUE: 0, OK: 0, MISSING: 1, NO_INTERVAL: 2, VAULT_MANAGED: 3,
            ON_DEMAND: 4}[row["state"]]
    due_at = datetime.fromisoformat(row["due_at"]) if row["due_at"] else datetime.max.replace(
        tzinfo=UTC)
    return (rank, due_at, row["stack"], row["id"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register due's arguments."""
    parser.description = DESCRIPTION
    stacks.add_stack_arguments(parser, allow_all=True)
    parser.add_argument("--now", help="evaluate at this ISO 8601 time instead of now "
                        "(naive = UTC), e.g. to see what falls due before a freeze")


def run(args: argparse.Namespace) -> Result:
    """Compute due dates for every static secret; exit 1 if any is overdue."""
    now = parse_now(args.now)
    targets, declared = declared_secrets(args)
    live, unreachable = read_reachable(targets, declared, "due: reading KV metadata")
    down = {u["stack"] for u in unreachable}
    rows = sorted((due_row(d, live.get(d.key), now) for d in declared if d.stack not in down),
                  key=_order)
    counts = {s: sum(1 for r in rows if r["state"] == s)
              for s in (OVERDUE, OK, MISSING, NO_INTERVAL)}
    others, labels = credential_rows([t for t in targets if t.name not in down], now)
    others.sort(key=_order)
    staggered = stagger([*rows, *others], labels)
    other_counts = {s: sum(1 for r in others if r["state"] == s)
                    for s in (OVERDUE, OK, MISSING, NO_INTERVAL, VAULT_MANAGED, ON_DEMAND)}
    ok = counts[OVERDUE] == 0 and other_counts[OVERDUE] == 0 and not unreachable
    payload = {
        "ok": ok,
        "now": rfc3339(now, exact=True),
        "stacks": [{"stack": t.name, "address": display_url(t.vault.address),
                    "address_from": t.address_from, "reachable": t.name not in down}
                   for t in targets],
        "summary": counts,
        "secrets": rows,
        "unreachable": unreachable,
        "credentials_summary": other_counts,
        "credentials": others,
        "staggered": staggered,
    }

    def render(out: TextIO) -> None:
        tables.render(due_table(rows, now), out)
        if others:
            tables.render(credentials_table(others), out)
        if staggered:
            tables.write_line(out, f"staggered {staggered} rotation(s) so credentials that "
                              "belong together are not due in the same hour (see status)")
        for line in unreachable_lines(unreachable):
            tables.write_line(out, line)
        verdict = "FAIL" if not ok else "ok"
        tables.write_line(out, f"due {verdict}: " + ", ".join(
            f"{n} {s}" for s, n in counts.items()) + (
            f", {len(unreachable)} stack(s) unreachable" if unreachable else ""))

    code = EXIT_VAULT_UNAVAILABLE if unreachable else (0 if ok else 1)
    return Result(payload, render, exit_code=code)


def due_table(rows: list[dict[str, Any]], now: datetime) -> TableData:
    """Return the text table: stack, secret, version, status first; dates and interval after."""
    data = TableData(f"rotation due dates at {rfc3339(now)}",
                     ["stack", "secret", "version", "status", "last rotated", "interval",
                      "due at"], key_columns=4)
    for row in rows:
        interval = (format_duration(row["interval_seconds"])
                    if row["interval_seconds"] is not None else "-")
        if row["mirror_of"]:
            interval += f" (from {row['mirror_of']})"
        status = (f"{row['state']}: {row['note']}" if row["state"] in (MISSING, NO_INTERVAL)
                  else row["note"])
        data.add([row["stack"], row["id"], str(row["live_version"] or "-"),
                  status, _seconds(row["last_rotated"]), interval, _seconds(row["due_at"])],
                 style="red" if row["state"] in (OVERDUE, MISSING) else None)
    return data


def credentials_table(rows: list[dict[str, Any]]) -> TableData:
    """Return the table of the other credential classes: stack, credential, state first."""
    data = TableData("other credentials", ["stack", "credential", "state", "status", "kind",
                                           "last rotated", "interval", "due at"],
                     key_columns=3)
    for row in rows:
        interval = (format_duration(row["interval_seconds"])
                    if row["interval_seconds"] is not None else "-")
        data.add([row["stack"], row["id"], row["state"], row["note"], row["kind"],
                  _seconds(row["last_rotated"]), interval, _seconds(row["due_at"])],
                 style="red" if row["state"] in (OVERDUE, MISSING) else None)
    return data


def _seconds(stamp: str | None) -> str:
    """Return a JSON timestamp as the text tables show it (RFC 3339 UTC, whole seconds)."""
    return rfc3339(datetime.fromisoformat(stamp)) if stamp else "-"
