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

A write that gets no answer (the connection dropped, the active node died
mid-request) may or may not have been applied. It is never simply retried:
the secret is re-read and, if the version moved on and holds our values, the
write is counted as done - so a lost answer never becomes a second version.
Otherwise it is merged and retried like a CAS conflict. With
``unavailable_timeout`` > 0, reads and writes that find Vault unavailable
(a leader election in an HA cluster) are retried for that long, reconnecting
through ``reconnect`` (which finds the new active node); when Vault does not
come back the error says whether a write was left undecided.

Every outcome names the path, keys and versions; values never leave this
module (not in results, exceptions or logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import hvac.exceptions

from rotation.errors import BadInput, CasConflict, CheckFailed, VaultUnavailable
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
    unanswered_writes: int = 0  # writes whose answer was lost, settled by re-reading

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
Reconnect = Callable[[], hvac.Client]
T = TypeVar("T")
_RETRY_FIRST_SECONDS = 0.25
_RETRY_MAX_SECONDS = 2.0


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
        hint=f"undelete it (bao kv undelete -versions={version} {where}) or have its owner "
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


def retry_unavailable(operation: Callable[[], T], timeout: float, *,
                      between: Callable[[], None] | None = None,
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``operation``, retrying :class:`VaultUnavailable` for ``timeout`` seconds (0: never).

    ``between`` runs before each retry (reconnecting to the new active node).
    """
    since: float | None = None
    delay = _RETRY_FIRST_SECONDS
    while True:
        try:
            return operation()
        except VaultUnavailable as exc:
            now = clock()
            since = now if since is None else since
            if now - since + delay > timeout:
                raise
            log.info("%s; retrying in %.2fs (unavailable for %.1fs)", exc, delay, now - since)
            sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_SECONDS)
            if between is not None:
                between()


class _Patient:
    """A client whose calls retry unavailability for ``timeout`` seconds, reconnecting."""

    def __init__(self, client: hvac.Client, timeout: float, reconnect: Reconnect | None,
                 clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self.client = client
        self._timeout = timeout
        self._reconnect = reconnect
        self._clock = clock
        self._sleep = sleep

    def _again(self) -> None:
        if self._reconnect is not None:
            try:
                self.client = self._reconnect()
            except VaultUnavailable as exc:
                log.info("no active node yet: %s", exc)

    def call(self, operation: Callable[[hvac.Client], T]) -> T:
        return retry_unavailable(lambda: operation(self.client), self._timeout,
                                 between=self._again, clock=self._clock, sleep=self._sleep)


def _landed(vault: _Patient, mount: str, path: str, cas: int, payload: Mapping[str, Any]) -> bool:
    """Whether a write sent with ``cas`` is the one that made version ``cas + 1``.

    Check-and-set puts a write that was applied at exactly ``cas + 1``, so
    that version holding exactly ``payload`` means it was ours.
    """
    def read(client: hvac.Client) -> Mapping[str, Any] | None:
        with vault_errors(_address(client), f"reading {mount}/{path} version {cas + 1}"):
            try:
                answer = client.secrets.kv.v2.read_secret_version(
                    path=path, version=cas + 1, mount_point=mount,
                    raise_on_deleted_version=False)
            except hvac.exceptions.InvalidPath:
                return None
        data = answer["data"].get("data")
        return dict(data) if isinstance(data, dict) else None
    return vault.call(read) == dict(payload)


def _send(vault: _Patient, mount: str, path: str, cas: int,
          payload: Mapping[str, Any]) -> int | str:
    """Write once: the new version, ``"conflict"`` (CAS refused) or ``"unanswered"``."""
    where = f"{mount}/{path}"
    try:
        with vault_errors(_address(vault.client), f"writing {where} with cas={cas}"):
            response = vault.client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=dict(payload), cas=cas, mount_point=mount)
    except CasConflict:
        return "conflict"
    except VaultUnavailable as exc:
        log.warning("%s: the write with cas=%d got no answer (%s); re-reading to see "
                    "whether it was applied", where, cas, exc)
        return "unanswered"
    return int(response["data"]["version"])


def cas_put(
    client: hvac.Client,
    mount: str,
    path: str,
    changes: Mapping[str, Any],
    *,
    retries: int = 3,
    before_write: BeforeWrite | None = None,
    unavailable_timeout: float = 0.0,
    reconnect: Reconnect | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PutResult:
    """Set ``changes`` on ``mount/path`` with check-and-set, merging non-overlapping conflicts.

    ``retries`` bounds the re-read-merge-retry rounds after the first write.
    ``before_write`` (if given) runs after each read and before the write it
    prepares - the place a test plays the concurrent writer deterministically.
    ``unavailable_timeout`` is how long an unavailable Vault is retried
    (``reconnect`` gives the client to retry with). Raises
    :class:`OverlappingChange` on a same-key conflict,
    :class:`~rotation.errors.CasConflict` when the retries run out,
    :class:`~rotation.errors.VaultUnavailable` when Vault stays unavailable
    (saying whether a write is undecided), and
    :class:`~rotation.errors.BadInput` when ``mount`` is not a KV v2 mount.
    """
    if not changes or retries < 0:
        raise ValueError("cas_put needs at least one key to set and retries >= 0")
    where = f"{mount}/{path}"
    keys_set = tuple(sorted(changes))
    vault = _Patient(client, unavailable_timeout, reconnect, clock, sleep)
    vault.call(lambda c: ensure_kv2(c, mount))
    base = vault.call(lambda c: read_snapshot(c, mount, path))
    first_version = base.version
    merged_over: list[int] = []
    unanswered: list[tuple[int, dict[str, Any]]] = []  # (cas, payload) of lost answers
    attempts = 0
    while True:
        changed = tuple(k for k in keys_set if base.data.get(k, _ABSENT) != changes[k])
        if not changed:
            log.info("%s: version %d already holds the requested keys; nothing written",
                     where, base.version)
            return PutResult(mount, path, first_version, base.version, keys_set, (), attempts,
                             tuple(merged_over), written=False,
                             unanswered_writes=len(unanswered))
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
        sent = _send(vault, mount, path, base.version, payload)
        if isinstance(sent, int):
            log.debug("%s: wrote version %d with cas=%d", where, sent, base.version)
            return PutResult(mount, path, first_version, sent, keys_set, changed, attempts,
                             tuple(merged_over), written=True,
                             unanswered_writes=len(unanswered))
        if sent == "unanswered":
            unanswered.append((base.version, payload))
        try:
            latest = vault.call(lambda c: read_snapshot(c, mount, path))
            # A write whose answer was lost may have been applied (even after a re-read
            # that did not show it yet): if so it is that version - never write again.
            ours = next((cas + 1 for cas, sent_payload in unanswered
                         if latest.version > cas
                         and _landed(vault, mount, path, cas, sent_payload)), None)
        except VaultUnavailable as still:
            if not unanswered:
                raise
            raise VaultUnavailable(
                f"{where}: the write with cas={unanswered[-1][0]} got no answer and Vault "
                f"stayed unavailable ({still}): it may or may not have been applied",
                hint="run the same kv-put again once Vault answers: a write that was "
                     "applied is recognised and not repeated",
            ) from None
        if ours is not None:
            log.info("%s: version %d is the write whose answer was lost", where, ours)
            return PutResult(mount, path, first_version, ours, keys_set, changed, attempts,
                             tuple(merged_over), written=True,
                             unanswered_writes=len(unanswered))
        if latest.version == base.version:
            continue  # not applied: send it again
        clash = overlapping_keys(base.data, latest.data, changes)
        if clash:
            raise OverlappingChange(mount, path, clash, base.version, latest.version)
        log.info("%s: version %d appeared during attempt %d (cas=%d); merging onto it",
                 where, latest.version, attempts, base.version)
        merged_over.append(latest.version)
        base = latest
