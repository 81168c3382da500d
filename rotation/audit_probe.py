"""Are the audit devices logging? Vault refuses every request once no device can log.

``sys/audit`` lists the enabled devices (it needs sudo; without it the check
says so). For each file device whose path this host can see, an audited
request (``auth/token/lookup-self``) must make the file grow; a device that
does not is failing: fix it before the rotation, because the next failing
device stops Vault. Devices of other types (syslog, socket) cannot be
observed from here and are reported as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions


@dataclass(frozen=True)
class DeviceStatus:
    """One enabled audit device and what the probe saw."""

    path: str
    type: str
    state: str  # "logging", "failing", "not-observable"
    detail: str


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def probe_audit_devices(client: hvac.Client, base_dir: Path | None = None) -> list[DeviceStatus]:
    """Return each enabled device's state; raise ``hvac.exceptions.Forbidden`` without sudo.

    Relative file paths are resolved against ``base_dir`` (the server's working
    directory, when known); otherwise they are not observable from here.
    """
    listed = client.sys.list_enabled_audit_devices()
    devices = listed.get("data", listed) if isinstance(listed, dict) else {}
    files: dict[str, tuple[str, Path]] = {}
    statuses: list[DeviceStatus] = []
    for raw_path, info in sorted(devices.items()):
        if not isinstance(info, dict):
            continue
        path, kind = raw_path.rstrip("/"), str(info.get("type"))
        file_path = str((info.get("options") or {}).get("file_path", ""))
        if kind == "file" and file_path not in {"", "stdout", "discard"}:
            target = Path(file_path)
            if not target.is_absolute():
                if base_dir is None:
                    statuses.append(DeviceStatus(path, kind, "not-observable",
                                                 f"relative path {file_path}"))
                    continue
                target = base_dir / target
            files[path] = (kind, target)
        else:
            statuses.append(DeviceStatus(path, kind, "not-observable",
                                         f"{kind} device: check its sink directly"))
    before = {p: _size(t) for p, (_, t) in files.items()}
    client.auth.token.lookup_self()  # an audited request every working device logs
    for path, (kind, target) in files.items():
        after = _size(target)
        if after is None:
            statuses.append(DeviceStatus(path, kind, "failing",
                                         f"{target} is missing or not a file"))
        elif before[path] is not None and after <= (before[path] or 0):
            writable = os.access(target, os.W_OK)
            statuses.append(DeviceStatus(path, kind, "failing",
                                         f"{target} did not grow after an audited request"
                                         + ("" if writable else " (not writable)")))
        else:
            statuses.append(DeviceStatus(path, kind, "logging", str(target)))
    return sorted(statuses, key=lambda s: s.path)

