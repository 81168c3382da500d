"""Read Vault/OpenBao file-audit logs (one JSON object per line) for rotation evidence.

Request paths are logged in the clear; values are HMAC'd by the server.
Evidence taken from here is identifiers only: request id, time, operation,
path and the KV version number of the response.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITE_OPERATIONS = frozenset({"create", "update", "patch"})


@dataclass(frozen=True)
class AuditEvent:
    """One response entry of the audit log, reduced to identifiers."""

    request_id: str
    time: str
    operation: str
    path: str
    error: str | None
    version: int | None
    remote_address: str | None
    # An apply-time rotation's request carries its declared version (not secret, not HMAC'd).
    rotation_version: int | None = None
    request_time: str | None = None  # when the request was logged (before Vault acted on it)


def _event(entry: dict[str, Any]) -> AuditEvent | None:
    if entry.get("type") != "response":
        return None
    request = entry.get("request") or {}
    response = entry.get("response") or {}
    raw_data = response.get("data")
    version = raw_data.get("version") if isinstance(raw_data, dict) else None
    request_data = request.get("data")
    rotation = (request_data.get("tradepulse_version") if isinstance(request_data, dict)
                else None)
    return AuditEvent(
        request_id=str(request.get("id", "")),
        time=str(entry.get("time", "")),
        operation=str(request.get("operation", "")),
        path=str(request.get("path", "")),
        error=entry.get("error") or None,
        version=version if isinstance(version, int) else None,
        remote_address=request.get("remote_address"),
        rotation_version=rotation if isinstance(rotation, int) else None,
    )


def read_events(lines: Iterable[str]) -> Iterator[AuditEvent]:
    """Yield response events from audit-log lines, skipping blank or partial lines."""
    requested: dict[str, str] = {}  # request id -> time of its request entry
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written; the next read sees it whole
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "request" and isinstance(entry.get("request"), dict):
            requested[str(entry["request"].get("id", ""))] = str(entry.get("time", ""))
        elif (event := _event(entry)) is not None:
            yield dataclasses.replace(event, request_time=requested.pop(event.request_id, None))


def events_from_file(path: Path, offset: int = 0) -> tuple[list[AuditEvent], int]:
    """Return complete events after byte ``offset`` and the offset to continue from."""
    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
    end = chunk.rfind(b"\n") + 1  # only whole lines; a partial tail is read next time
    text = chunk[:end].decode("utf-8", errors="replace")
    return list(read_events(text.splitlines())), offset + end


def write_evidence(events: Iterable[AuditEvent], data_path: str, version: int) -> AuditEvent | None:
    """Return the successful write of ``version`` at ``data_path``, if logged."""
    matches = [e for e in events if e.path == data_path and e.operation in WRITE_OPERATIONS
               and e.error is None and e.version == version]
    return matches[-1] if matches else None


def rotation_evidence(events: Iterable[AuditEvent], path: str, version: int) -> AuditEvent | None:
    """Return the successful apply-time rotation write of ``version`` at ``path``, if logged."""
    matches = [e for e in events if e.path == path and e.operation in WRITE_OPERATIONS
               and e.error is None and e.rotation_version == version]
    return matches[-1] if matches else None
