"""Staggering: credentials that belong together are never due in the same hour.

A service's static database role and its API key, or two static roles paired
for the same connector, rotate together only at the cost of an outage when
both change at once (hashicorp/vault#18738). ``due`` therefore keeps their
due dates at least :data:`STAGGER_SECONDS` apart: walking the dated rows in due
order, a row due within the hour of an earlier row of the same group is moved
to one hour after it (and again, until it clears every such row), and the row
says which credential it was moved behind and why. Only the recommended time
moves: the state (ok or overdue) is judged on the real due date.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from datetime import datetime, timedelta
from typing import Any

from kernel.spec.credentials import Credential
from kernel.spec.model import EnvironmentSpec
from rotation.timefmt import rfc3339

STAGGER_SECONDS = 60 * 60  # 1h: one rotation per group per hour

Row = MutableMapping[str, Any]


def groups(stack: str, spec: EnvironmentSpec, creds: Iterable[Credential]) -> dict[
        tuple[str, str], set[str]]:
    """Return ``{(stack, credential id): group labels}``: its consuming services and pairs."""
    out: dict[tuple[str, str], set[str]] = {}
    for secret in spec.static_secrets:
        out[(stack, secret.id)] = {f"service {c}" for c in secret.consumers}
    for cred in creds:
        labels = out.setdefault((stack, cred.id), set())
        labels |= {f"service {c}" for c in cred.consumers}
        for other in cred.related:
            labels.add("pair " + " + ".join(sorted((cred.id, other))))
    return out


def stagger(rows: Iterable[Row], labels: Mapping[tuple[str, str], set[str]]) -> int:
    """Set ``staggered_due_at`` on every row (None when unchanged); return how many moved."""
    dated = sorted((r for r in rows if r.get("due_at")),
                   key=lambda r: (r["due_at"], r["stack"], r["id"]))
    placed: list[tuple[datetime, set[str], Row]] = []
    moved_count = 0
    for row in dated:
        keys = labels.get((row["stack"], row["id"]), set())
        at = datetime.fromisoformat(str(row["due_at"]).replace("Z", "+00:00"))
        behind: tuple[str, str] | None = None
        moved = True
        while moved:
            moved = False
            for other_at, other_keys, other in placed:
                shared = keys & other_keys
                if (shared and other["stack"] == row["stack"]
                        and abs((at - other_at).total_seconds()) < STAGGER_SECONDS):
                    at = other_at + timedelta(seconds=STAGGER_SECONDS)
                    behind = (str(other["id"]), sorted(shared)[0])
                    moved = True
        row["staggered_due_at"] = rfc3339(at, exact=True) if behind else None
        if behind is not None:
            moved_count += 1
            row["note"] = (f"{row['note']}; staggered to {at.strftime('%Y-%m-%d %H:%MZ')}: 1h "
                           f"after {behind[0]} (same {behind[1]})")
        placed.append((at, keys, row))
    for row in rows if isinstance(rows, list) else []:
        row.setdefault("staggered_due_at", None)
    return moved_count
