"""The one timestamp format of every message, table, record and JSON field: RFC 3339, UTC.

``2026-12-01T09:52:52Z``: always UTC with ``Z``, seconds in text for people;
JSON fields keep the microseconds Vault gave (``...:52.123456Z``, the same
format with a fraction) so a machine can compare them exactly. Vault answers
with nanoseconds and Python's defaults print ``+00:00`` or a space; one format
lets an operator compare and grep times across ``preflight``, ``verify``,
``drift``, ``due``, the dynamic credential file and the rotation records.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rotation.kv import parse_time

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EXACT_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def rfc3339(value: datetime, *, exact: bool = False) -> str:
    """Return ``value`` as RFC 3339 UTC (naive is UTC); ``exact`` keeps microseconds."""
    aware = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return aware.strftime(EXACT_FORMAT if exact and aware.microsecond else FORMAT)


def rfc3339_or_none(value: datetime | None, *, exact: bool = False) -> str | None:
    """Return :func:`rfc3339` of ``value``, or ``None`` for a time that was not observed."""
    return None if value is None else rfc3339(value, exact=exact)


def now() -> str:
    """Return the current time as RFC 3339 UTC."""
    return rfc3339(datetime.now(UTC))


def reformat(text: str | None, *, exact: bool = False) -> str | None:
    """Return a timestamp string another tool wrote (Vault, an audit log) in our format.

    Text that is not an ISO 8601 timestamp is returned unchanged: it is
    evidence, and evidence is not rewritten into something it did not say.
    """
    if not text:
        return text
    try:
        parsed = parse_time(text)
    except ValueError:
        return text
    return text if parsed is None else rfc3339(parsed, exact=exact)


def format_duration(seconds: float) -> str:
    """Render a duration for people, two largest units: ``70d 3h``, ``30d``, ``4h 12m``."""
    rest = int(abs(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or (parts and len(parts) < 2):
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    while len(parts) > 1 and parts[-1].startswith("0"):
        parts.pop()
    return " ".join(parts) or "0s"
