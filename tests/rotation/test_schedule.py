"""Staggering of credentials that belong together (pure: rows in, rows out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rotation.schedule import STAGGER_SECONDS, stagger

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def row(credential_id: str, minutes: int, stack: str = "prod") -> dict[str, Any]:
    return {"stack": stack, "id": credential_id, "note": "due in 30d",
            "due_at": (T0 + timedelta(minutes=minutes)).isoformat()}


def test_a_services_static_role_and_api_key_are_moved_an_hour_apart() -> None:
    rows = [row("database/static-roles/settlement", 10), row("secret/services/x/api-key", 0),
            row("secret/services/y/other", 5)]
    labels = {("prod", "database/static-roles/settlement"): {"service x"},
              ("prod", "secret/services/x/api-key"): {"service x"},
              ("prod", "secret/services/y/other"): {"service y"}}
    assert stagger(rows, labels) == 1
    static, key, other = rows
    assert key["staggered_due_at"] is None and other["staggered_due_at"] is None
    moved = datetime.fromisoformat(static["staggered_due_at"])
    assert moved == T0 + timedelta(seconds=STAGGER_SECONDS)
    assert "staggered to 2027-03-01 13:00Z: 1h after secret/services/x/api-key (same service x)" \
        in static["note"]
    assert static["due_at"] == (T0 + timedelta(minutes=10)).isoformat(), "the real date stays"


def test_pairs_cascade_until_every_member_has_its_own_hour() -> None:
    pair = {"pair a + b"}
    rows = [row("a", 0), row("b", 1), row("c", 2)]
    labels = {("prod", "a"): pair, ("prod", "b"): pair | {"pair b + c"},
              ("prod", "c"): {"pair b + c"}}
    assert stagger(rows, labels) == 2
    times = [datetime.fromisoformat(r["staggered_due_at"] or r["due_at"]) for r in rows]
    assert times == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]


def test_other_stacks_and_unrelated_credentials_are_left_alone() -> None:
    rows = [row("a", 0, "prod"), row("a", 0, "dr"), row("b", 30, "prod")]
    labels = {("prod", "a"): {"service x"}, ("dr", "a"): {"service x"},
              ("prod", "b"): {"service z"}}
    assert stagger(rows, labels) == 0
    assert all(r["staggered_due_at"] is None for r in rows)
