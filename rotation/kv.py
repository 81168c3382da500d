"""Live KV v2 state: metadata reads (never values) for rotation checks.

``current_version``, ``updated_time`` and the per-version timestamps are
what pre-flight, verification, drift and due-date checks compare against the
declared versions. Secret data is never read here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import hvac
import hvac.exceptions


@dataclass(frozen=True)
class LiveMetadata:
    """What Vault says about a KV v2 secret, without its data."""

    mount: str
    path: str
    current_version: int
    updated_time: datetime | None
    created_time: datetime | None
    version_times: dict[int, datetime]
    custom_metadata: dict[str, str]

    @property
    def id(self) -> str:
        """``<mount>/<path>``, as the spec names it."""
        return f"{self.mount}/{self.path}"


def parse_time(value: object) -> datetime | None:
    """Parse Vault's RFC 3339 timestamps (nanosecond precision) into aware datetimes.

    Fractional seconds past microseconds are dropped (truncated, not rounded);
    Go's zero time (``0001-...``) and anything not a non-empty string are None.
    """
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    try:
        # Python >= 3.11 reads "Z" and drops digits past the sixth itself: the common case.
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    text = value.replace("Z", "+00:00")
    if "." in text:
        head, rest = text.split(".", 1)
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    return datetime.fromisoformat(text)


def metadata_from_response(mount: str, path: str, data: dict[str, Any]) -> LiveMetadata:
    """Build :class:`LiveMetadata` from the ``data`` of a ``<mount>/metadata/<path>`` read."""
    versions = {
        int(number): created
        for number, info in (data.get("versions") or {}).items()
        if (created := parse_time(info.get("created_time"))) is not None
    }
    return LiveMetadata(
        mount=mount,
        path=path,
        current_version=int(data.get("current_version") or 0),
        updated_time=parse_time(data.get("updated_time")),
        created_time=parse_time(data.get("created_time")),
        version_times=versions,
        custom_metadata=dict(data.get("custom_metadata") or {}),
    )


def read_metadata(client: hvac.Client, mount: str, path: str) -> LiveMetadata | None:
    """Return the live metadata of ``mount/path``, or None if the secret does not exist."""
    try:
        response = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    except hvac.exceptions.InvalidPath:
        return None
    return metadata_from_response(mount, path, response["data"])
