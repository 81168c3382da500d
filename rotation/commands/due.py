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
from datetime import datetime
from typing import Any, TextIO

from kernel.redact import display_url
from rotation import stacks, tables
from rotation.due_dates import (
    MISSING,
    NO_INTERVAL,
    OK,
    ON_DEMAND,
    OVERDUE,
    VAULT_MANAGED,
    credential_rows,
    due_order,
    due_row,
    parse_now,
)
from rotation.errors import EXIT_VAULT_UNAVAILABLE
from rotation.output import Result
from rotation.reachable import declared_secrets, read_reachable, unreachable_lines
from rotation.schedule import stagger
from rotation.tables import TableData
from rotation.timefmt import format_duration, rfc3339

NAME = "due"
HELP = "list static secrets by rotation due date (soonest first); exit 1 if any is overdue"

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
                  key=due_order)
    counts = {s: sum(1 for r in rows if r["state"] == s)
              for s in (OVERDUE, OK, MISSING, NO_INTERVAL)}
    others, labels = credential_rows([t for t in targets if t.name not in down], now)
    others.sort(key=due_order)
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
