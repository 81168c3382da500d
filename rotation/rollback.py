"""What a rollback (``restores: M``) needs from Vault's KV history, never showing a value.

``preflight`` asks :func:`restorable_problem` whether version M can still be
read: present in the secret's metadata ``versions``, not soft-deleted
(``deletion_time`` passed) and not ``destroyed``; a version missing from the map
but below the current one was pushed out by the mount's ``max_versions``.
``verify`` asks :func:`restored_matches` whether the live data of the new
version equals version M's: both are read from Vault and reduced to a
SHA-256 digest of their canonical JSON inside this process; only whether the
digests match leaves it. :func:`previous_kept` says which previous value a
``keep_previous`` secret still keeps, and for how long (``due`` and ``drift``).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import hvac
import hvac.exceptions

from kernel.spec.model import PREVIOUS_SUFFIX, StaticSecret
from rotation.kv import LiveMetadata, parse_time
from rotation.timefmt import format_duration, rfc3339


def restorable_problem(client: hvac.Client, secret: StaticSecret) -> str | None:
    """Return why a version the apply reads from history cannot be read (None when it can).

    That is ``restores`` (rollback), ``retired`` (retire) or ``previous`` (a
    keep_previous rotation keeps that version's keys as ``<KEY>_PREVIOUS``).
    """
    for wanted in (secret.from_history, secret.previous):
        if wanted is not None:
            problem = _history_problem(client, secret, wanted)
            if problem is not None:
                return problem
    return None


def _history_problem(client: hvac.Client, secret: StaticSecret, wanted: int) -> str | None:
    """Return what Vault's metadata says is wrong with version ``wanted`` (None: readable)."""
    try:
        response = client.secrets.kv.v2.read_secret_metadata(path=secret.path,
                                                             mount_point=secret.mount)
    except hvac.exceptions.InvalidPath:
        return f"{secret.id}: the secret does not exist, so version {wanted} cannot be restored"
    data: dict[str, Any] = response.get("data") or {}
    versions: dict[str, Any] = data.get("versions") or {}
    info = versions.get(str(wanted))
    if info is None:
        kept = sorted(int(v) for v in versions)
        oldest = kept[0] if kept else None
        if oldest is not None and wanted < oldest:
            return (f"{secret.id}: version {wanted} was pushed out of the history by max_versions "
                    f"(oldest kept: {oldest}); pick a version from {oldest} on")
        return f"{secret.id}: version {wanted} is not in the secret's history"
    if info.get("destroyed"):
        return f"{secret.id}: version {wanted} is destroyed; its data cannot be restored"
    # A mount's delete_version_after_seconds gives every version a deletion_time in the
    # future: the version is deleted only once that time has passed.
    deleted = parse_time(info.get("deletion_time"))
    if deleted is not None and deleted <= datetime.now(UTC):
        return (f"{secret.id}: version {wanted} is deleted (deletion_time "
                f"{rfc3339(deleted)}); undelete it first (bao kv undelete -versions="
                f"{wanted} {secret.mount}/{secret.path}) or pick another version")
    return None


def _digest(client: hvac.Client, secret: StaticSecret, version: int, suffix: str = "") -> str:
    """Return the SHA-256 of the declared keys (``<KEY><suffix>``) of version ``version``.

    Canonical JSON of ``{KEY: value}``; a missing key is ``null``. The data is dropped here.
    """
    response = client.secrets.kv.v2.read_secret_version(
        path=secret.path, mount_point=secret.mount, version=version,
        raise_on_deleted_version=True)
    held: dict[str, Any] = response["data"]["data"] or {}
    picked = {key: held.get(f"{key}{suffix}") for key in secret.keys}
    body = json.dumps(picked, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def restored_matches(client: hvac.Client, secret: StaticSecret, version: int) -> bool:
    """Return whether version ``version``'s declared keys equal those of the restored version."""
    assert secret.from_history is not None
    return _digest(client, secret, version) == _digest(client, secret, secret.from_history)


def previous_matches(client: hvac.Client, secret: StaticSecret, version: int) -> bool:
    """Return whether version ``version``'s ``<KEY>_PREVIOUS`` equal version ``previous``'s keys."""
    assert secret.previous is not None
    return (_digest(client, secret, version, PREVIOUS_SUFFIX)
            == _digest(client, secret, secret.previous))


def previous_kept(secret: StaticSecret, meta: LiveMetadata | None,
                  now: datetime) -> dict[str, Any] | None:
    """Return which previous value ``secret`` keeps and since when (None if it keeps none).

    ``since`` is when Vault created the version that keeps it (``previous + 1``);
    None while that version is not written yet (the rotation is not applied).
    """
    if secret.previous is None:
        return None
    created = meta.version_times.get(secret.previous + 1) if meta is not None else None
    return {"version": secret.previous, "keys": [f"{k}{PREVIOUS_SUFFIX}" for k in secret.keys],
            "since": rfc3339(created, exact=True) if created else None,
            "for_seconds": int((now - created).total_seconds()) if created else None}


def previous_note(kept: dict[str, Any] | None) -> str:
    """Return the table note for :func:`previous_kept` ("" when nothing is kept)."""
    if kept is None:
        return ""
    held = (f" for {format_duration(kept['for_seconds'])}" if kept["for_seconds"] is not None
            else " once applied")
    return f"; keeps v{kept['version']} as <KEY>_PREVIOUS{held} (retire drops it)"
