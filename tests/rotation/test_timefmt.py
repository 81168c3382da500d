"""One timestamp format: RFC 3339 in UTC with ``Z``, whole seconds for people, exact for JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from rotation.timefmt import format_duration, reformat, rfc3339, rfc3339_or_none


def test_every_datetime_becomes_utc_with_z() -> None:
    berlin = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 12, 1, 10, 52, 52, 123456, tzinfo=berlin)) == (
        "2026-12-01T09:52:52Z")
    assert rfc3339(datetime(2026, 12, 1, 9, 52, 52)) == "2026-12-01T09:52:52Z"  # naive: UTC
    assert rfc3339(datetime(2026, 12, 1, 9, 52, 52, 5, tzinfo=UTC), exact=True) == (
        "2026-12-01T09:52:52.000005Z")
    assert rfc3339(datetime(2026, 12, 1, 9, 52, 52, tzinfo=UTC), exact=True) == (
        "2026-12-01T09:52:52Z")
    assert rfc3339_or_none(None) is None


def test_vault_and_audit_log_times_are_rewritten_and_anything_else_is_left_alone() -> None:
    assert reformat("2026-12-01T09:52:52.123456789Z") == "2026-12-01T09:52:52Z"
    assert reformat("2026-12-01T10:52:52.5+01:00", exact=True) == "2026-12-01T09:52:52.500000Z"
    assert reformat("not a time") == "not a time"
    assert reformat("") == "" and reformat(None) is None
    round_trip = datetime.fromisoformat(rfc3339(datetime.now(UTC), exact=True))
    assert round_trip.tzinfo is not None


def test_durations_keep_two_units() -> None:
    assert format_duration(70 * 86400 + 3 * 3600 + 5) == "70d 3h"
    assert format_duration(30 * 86400) == "30d"
    assert format_duration(4 * 3600 + 12 * 60) == "4h 12m"
    assert format_duration(0) == "0s"
