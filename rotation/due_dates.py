"""When each credential is due for rotation: the rows ``due`` prints and ``bump --due`` acts on.

A secret's last rotation is the creation time of its live ``current_version``
(from KV v2 metadata; ``updated_time`` only if that version's time is absent).
``updated_time`` alone would also move on a metadata-only write
(``custom_metadata``, ``max_versions``) that rotates nothing, hiding an overdue
secret. Due date = last rotation + ``rotation_interval_seconds``. A database
static role is due ``rotation_period`` after Vault's ``last_vault_rotation``; a
JWT issuer key is rotated by Vault on its own period (not observable); the root
credential and lease generations rotate only on a reviewed bump.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.redact import describe
from kernel.spec.credentials import Credential, credentials
from rotation import stacks
from rotation.credential_checks import last_vault_rotation, parse_time
from rotation.errors import BadInput
from rotation.kv import LiveMetadata
from rotation.live.declared import Declared
from rotation.rollback import previous_kept, previous_note
from rotation.schedule import groups
from rotation.timefmt import format_duration, rfc3339
from rotation.vault import vault_errors

OVERDUE = "overdue"

OK = "ok"

MISSING = "missing"

NO_INTERVAL = "no_interval"

VAULT_MANAGED = "vault_managed"

ON_DEMAND = "on_demand"


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


def due_order(row: dict[str, Any]) -> tuple[int, datetime, str, str]:
    """Sort key: what needs a person first (dated soonest first), then what Vault owns."""
    rank = {OVERDUE: 0, OK: 0, MISSING: 1, NO_INTERVAL: 2, VAULT_MANAGED: 3,
            ON_DEMAND: 4}[row["state"]]
    due_at = datetime.fromisoformat(row["due_at"]) if row["due_at"] else datetime.max.replace(
        tzinfo=UTC)
    return (rank, due_at, row["stack"], row["id"])
