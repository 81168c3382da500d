"""Check-and-set KV v2 writes that merge a concurrent edit instead of stomping it.

The runbook's manual path for secrets this repository does not own: read the
current version ``V`` and data ``D0``, write ``D0`` plus our changes with
``cas=V`` (``cas=0`` creates). If Vault refuses the check-and-set because
someone wrote version ``V2`` in between, re-read ``(V2, D2)`` and:

* refuse (:class:`OverlappingChange`, exit 1) when any key we change was also
  changed by the other writer (``D2[k] != D0[k]`` and ``D2[k] != ours``) -
  a person must reconcile that, not a merge;
* otherwise put our changes on top of ``D2`` and retry with ``cas=V2``,
  at most ``retries`` times.

Every outcome names the path, keys and versions; values never leave this
module (not in results, exceptions or logs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions

from rotation.errors import BadInput, CasConflict, CheckFailed
from rotation.kv import read_metadata
from rotation.output import log
from rotation.vault import vault_errors

_ABSENT = object()  # a key missing from a version, distinct from a JSON null value


@dataclass(frozen=True)
class Snapshot:
    """One version of a secret as read: ``version`` 0 means the secret does not exist."""

    version: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Attempt:
    """A write about to be sent: its 1-based number and the ``cas`` it carries."""

    number: int
    cas: int


@dataclass(frozen=True)
class PutResult:
    """What a :func:`cas_put` did, by key name and version only."""

    mount: str
    path: str
    old_version: int  # the version first read (0: the secret did not exist)
    new_version: int  # the version now current (== old_version when nothing was written)
    keys_set: tuple[str, ...]  # every key the caller asked to set
    keys_changed: tuple[str, ...]  # those whose value actually changed in the write
    attempts: int  # writes sent (0 when nothing needed writing)
    merged_over: tuple[int, ...]  # versions written by others that the changes were merged onto
    written: bool

    @property
    def id(self) -> str:
        """``<mount>/<path>``."""
        return f"{self.mount}/{self.path}"


class OverlappingChange(CasConflict):
    """Another writer changed a key we also change: refused, nothing written."""

    def __init__(self, mount: str, path: str, keys: list[str], base_version: int,
                 latest_version: int) -> None:
        self.keys = tuple(keys)
        self.base_version = base_version
        self.latest_version = latest_version
        super().__init__(
            f"refused: {mount}/{path} key(s) {', '.join(keys)} changed in version "
            f"{latest_version} by another writer since version {base_version} was read; "
            "nothing was written",
            hint="read the latest version, agree on the value with its writer, and run "
                 "kv-put again",
        )


BeforeWrite = Callable[[Attempt], None]


def _address(client: hvac.Client) -> str:
    return str(getattr(client, "url", "") or "Vault")


def ensure_kv2(client: hvac.Client, mount: str) -> None:
    """Refuse (exit 2) unless ``mount`` is a KV version 2 mount.

    ``sys/internal/ui/mounts/<mount>`` is what the vault CLI's own ``kv``
    commands ask: any token with a capability under the mount may read it. A
    write to ``<mount>/data/<path>`` on a KV v1 mount would otherwise succeed
    as a plain secret named ``data/<path>``.
    """
    with vault_errors(_address(client), f"checking that {mount} is a KV v2 mount"):
        try:
            info = client.adapter.get(f"/v1/sys/internal/ui/mounts/{mount}")["data"]
        except hvac.exceptions.InvalidPath:
            info = {}
    found = str(info.get("path", "")).rstrip("/")
    version = str((info.get("options") or {}).get("version", ""))
    if info.get("type") != "kv" or version != "2" or found != mount:
        what = (f"a {info.get('type')} v{version or '?'} mount at {found}/" if info
                else "no mount")
        raise BadInput(f"{mount} is not a KV version 2 mount (Vault reports {what})",
                       hint="pass the KV v2 mount with --mount and the rest with --path")


def read_snapshot(client: hvac.Client, mount: str, path: str) -> Snapshot:
    """Return the current version and data of ``mount/path`` (version 0 if it does not exist).

    A current version that is deleted or destroyed is refused: merging onto it
    would silently drop every key it held.
    """
    where = f"{mount}/{path}"
    address = _address(client)
    with vault_errors(address, f"reading {where}"):
        try:
            response = client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=False)
        except hvac.exceptions.InvalidPath:
            response = None
        if response is None:
            # Absent, a destroyed current version (hvac raises for those too), or a
            # secret another writer created between this read and the next.
            meta = read_metadata(client, mount, path)
            if meta is None or meta.current_version == 0:
                return Snapshot(0, {})
            try:
                response = client.secrets.kv.v2.read_secret_version(
                    path=path, version=meta.current_version, mount_point=mount,
                    raise_on_deleted_version=False)
            except hvac.exceptions.InvalidPath:
                _refuse_deleted(where, meta.current_version)
    data = response["data"]
    version = int(data["metadata"]["version"])
    if data.get("data") is None:
        _refuse_deleted(where, version)
    return Snapshot(version, dict(data["data"]))


def _refuse_deleted(where: str, version: int) -> None:
    raise CheckFailed(
        f"{where}: current version {version} is deleted or destroyed; refusing to merge onto it",
        hint=f"undelete it (vault kv undelete -versions={version} {where}) or have its owner "
             "write a full new version",
    )


def overlapping_keys(base: Mapping[str, Any], latest: Mapping[str, Any],
                     changes: Mapping[str, Any]) -> list[str]:
    """Keys we change that the other writer also changed, to something other than ours."""
    clash = []
    for key, ours in changes.items():
        theirs = latest.get(key, _ABSENT)
        if theirs != base.get(key, _ABSENT) and theirs != ours:
            clash.append(key)
    return sorted(clash)


def cas_put(
    client: hvac.Client,
    mount: str,
    path: str,
    changes: Mapping[str, Any],
    *,
    retries: int = 3,
    before_write: BeforeWrite | None = None,
) -> PutResult:
    """Set ``changes`` on ``mount/path`` with check-and-set, merging non-overlapping conflicts.

    ``retries`` bounds the re-read-merge-retry rounds after the first write.
    ``before_write`` (if given) runs after each read and before the write it
    prepares - the place a test plays the concurrent writer deterministically.
    Raises :class:`OverlappingChange` on a same-key conflict,
    :class:`~rotation.errors.CasConflict` when the retries run out, and
    :class:`~rotation.errors.BadInput` when ``mount`` is not a KV v2 mount.
    """
    if not changes:
        raise ValueError("cas_put needs at least one key to set")
    if retries < 0:
        raise ValueError("retries must be >= 0")
    where = f"{mount}/{path}"
    address = _address(client)
    keys_set = tuple(sorted(changes))
    ensure_kv2(client, mount)
    base = read_snapshot(client, mount, path)
    first_version = base.version
    merged_over: list[int] = []
    attempts = 0
    while True:
        changed = tuple(k for k in keys_set if base.data.get(k, _ABSENT) != changes[k])
        if not changed:
            log.info("%s: version %d already holds the requested keys; nothing written",
                     where, base.version)
            return PutResult(mount, path, first_version, base.version, keys_set, (), attempts,
                             tuple(merged_over), written=False)
        if attempts > retries:
            raise CasConflict(
                f"gave up on {where} after {attempts} attempts: it kept moving "
                f"(last seen version {base.version}); nothing was written",
                hint="retry when the other writers are done, or raise --retries",
            )
        attempts += 1
        if before_write is not None:
            before_write(Attempt(attempts, base.version))
        payload = {**base.data, **changes}
        try:
            with vault_errors(address, f"writing {where} with cas={base.version}"):
                response = client.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=payload, cas=base.version, mount_point=mount)
        except CasConflict:
            latest = read_snapshot(client, mount, path)
            clash = overlapping_keys(base.data, latest.data, changes)
            if clash:
                raise OverlappingChange(mount, path, clash, base.version,
                                        latest.version) from None
            log.info("%s: version %d appeared during attempt %d (cas=%d); merging onto it",
                     where, latest.version, attempts, base.version)
            merged_over.append(latest.version)
            base = latest
            continue
        new_version = int(response["data"]["version"])
        log.debug("%s: wrote version %d with cas=%d", where, new_version, base.version)
        return PutResult(mount, path, first_version, new_version, keys_set, changed, attempts,
                         tuple(merged_over), written=True)
