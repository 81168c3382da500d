"""Dynamic database credentials: issue, keep alive, hand over, and revoke Vault leases.

:class:`DynamicCredentialManager` owns one stream of credentials for one
database role: it issues a lease, hands the credentials to a callback, renews
the lease on the schedule Vault's own lifetime watcher uses
(``api/lifetime_watcher.go``), replaces the credentials before they expire when
the lease cannot be extended any further, and revokes what it issued when it
is stopped. :class:`ManagerGroup` drives many managers from one dispatcher
thread and a small worker pool (docs/benchmarks-dynamic.md measures how many
leases that keeps alive).

The schedule, per lease of ``D`` seconds:

* grace ``G`` = 10% of ``D`` plus up to another 10% of jitter, so a fleet of
  clients does not renew in lockstep;
* lead = ``max(G, refresh_margin, 2 s)``, the margin capped at half the
  lease (a margin longer than the lease would otherwise mean renewing
  non-stop; the 2 s covers Vault counting lease time in whole seconds);
* the next action comes after ``min(2/3 * D + G/3, D - lead)`` seconds:
  Vault's sleep, but never later than ``refresh_margin`` before expiry;
* a renewal that returns less than it asked for (the role's ``max_ttl`` is
  reached) or a lease that is not renewable is not renewed again: new
  credentials are issued ``lead`` seconds before the old lease expires,
  handed over, and then the old lease is revoked or left to expire;
* errors back off exponentially with jitter, never sleeping past half of
  what is left of the lease; once Vault has been unreachable longer than
  ``escalate_after`` (the runbook's five minutes) the manager stops with
  :class:`~rotation.errors.Escalation` (exit 4).

A lease that was issued but could not be handed over (the callback raised,
the process was interrupted) is always revoked. With a :class:`LeaseJournal`
its id is on disk from the moment Vault answered until the hand-over
finished, so even a hard kill in between leaves an id the next run revokes.

Nothing here logs or raises with a secret value: messages carry lease ids,
roles, mounts and times. :class:`Credential` keeps its data out of ``repr``.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import hvac
import hvac.exceptions

from kernel.atomic import write_text_atomic
from kernel.redact import describe, display_url, plainly_not_secret
from rotation import address as vault_address
from rotation.errors import (
    BadInput,
    CheckFailed,
    DatabaseUnavailable,
    Escalation,
    RotationError,
    VaultUnavailable,
)
from rotation.timefmt import rfc3339
from rotation.vault import vault_errors

log = logging.getLogger("rotation.dynamic")

DEFAULT_ESCALATE_AFTER_SECONDS = 5 * 60  # 5m: the runbook's escalation limit
DEFAULT_BACKOFF_INITIAL_SECONDS = 1.0
DEFAULT_BACKOFF_MAX_SECONDS = 60.0
MIN_RETRY_SECONDS = 0.1  # keeps a retry loop near expiry from spinning
GRACE_FRACTION = 0.1  # Vault's lifetime watcher: 10% of the lease ...
GRACE_JITTER_FRACTION = 0.1  # ... plus up to 10% more, at random
MAX_MARGIN_FRACTION = 0.5  # a refresh margin may claim at most half of a lease
# Vault counts a lease's age in whole seconds, so a renewal can come back up to a second
# short, and one made in the last counted second before max_ttl returns 0 (the lease ends
# at once). Acting at least 2 s before expiry keeps clear of both; it only matters for
# leases of a few seconds (the grace of a 300 s lease is 30 s or more).
MIN_LEAD_SECONDS = 2.0

ReplacedLease = Literal["revoke", "expire"]
Clock = Callable[[], float]


def iso(ts: float) -> str:
    """Return epoch seconds ``ts`` as RFC 3339 UTC (the one format, exact: microseconds)."""
    return rfc3339(datetime.fromtimestamp(ts, UTC), exact=True)


@dataclass(frozen=True)
class Credential:
    """One issued set of credentials and its lease. ``data`` never shows in ``repr``."""

    lease_id: str
    lease_duration: int
    renewable: bool
    role: str
    mount: str
    issued_at: float  # epoch seconds, when the issue request was sent
    expires_at: float  # epoch seconds, conservative (counted from the request, not the reply)
    data: Mapping[str, Any] = field(repr=False)
    renewed_at: float | None = None

    @property
    def username(self) -> str:
        """The database user name Vault created."""
        return str(self.data.get("username", ""))

    @property
    def password(self) -> str:
        """The database password Vault created."""
        return str(self.data.get("password", ""))

    def identifiers(self) -> dict[str, Any]:
        """Everything about this credential except its values: safe for stdout and logs."""
        return {
            "lease_id": self.lease_id,
            "lease_duration": self.lease_duration,
            "renewable": self.renewable,
            "role": self.role,
            "mount": self.mount,
            "issued_at": iso(self.issued_at),
            "expires_at": iso(self.expires_at),
            "renewed_at": None if self.renewed_at is None else iso(self.renewed_at),
        }

    def document(self) -> dict[str, Any]:
        """Return the runtime's JSON document: the credential values plus identifiers."""
        doc = {str(k): v for k, v in self.data.items()}
        doc.update(self.identifiers())
        return doc


@dataclass
class ManagerStats:
    """Counters a manager keeps; the benchmark and the command's result report them."""

    issued: int = 0
    renewals: int = 0
    replacements: int = 0
    revoked: int = 0
    unavailable_errors: int = 0
    late_renewals: int = 0  # started inside the grace window (the schedule slipped)
    late_replacements: int = 0  # new credentials arrived after the old lease expired (a gap)
    max_lag_seconds: float = 0.0  # worst delay between an action's due time and its start
    cpu_seconds: float = 0.0  # thread CPU time spent in renewals (for the benchmark)


@dataclass(frozen=True)
class CloseReport:
    """What :meth:`DynamicCredentialManager.close` revoked and what it could not."""

    revoked: list[str]
    not_revoked: list[str]


# -- the schedule, as pure functions so it can be checked without a clock ------------------


def grace_seconds(lease_seconds: float, rng: random.Random) -> float:
    """Return the grace period for a lease: 10% of it plus up to 10% jitter."""
    if lease_seconds <= 0:
        return 0.0
    return lease_seconds * GRACE_FRACTION + rng.random() * lease_seconds * GRACE_JITTER_FRACTION


def lead_seconds(lease_seconds: float, grace: float, refresh_margin: float) -> float:
    """Return how long before expiry the manager must have acted.

    The refresh margin (and the 2 s floor, see ``MIN_LEAD_SECONDS``) raise
    that lead above the grace, capped at half the lease so a margin longer
    than a (short) lease cannot turn renewal into a busy loop.
    """
    floor = max(refresh_margin, MIN_LEAD_SECONDS)
    return max(grace, min(floor, lease_seconds * MAX_MARGIN_FRACTION))


def renew_delay(remaining: float, grace: float, lead: float) -> float:
    """Return seconds until the next renewal of a lease with ``remaining`` seconds left.

    Vault's watcher sleeps 2/3 of the remaining lease plus 1/3 of the grace;
    the lead moves that earlier when the refresh margin asks for it.
    """
    return max(0.0, min(remaining * 2 / 3 + grace / 3, remaining - lead))


@dataclass
class Backoff:
    """Exponential backoff with jitter (uniform within +-``jitter`` of the step)."""

    initial: float = DEFAULT_BACKOFF_INITIAL_SECONDS
    maximum: float = DEFAULT_BACKOFF_MAX_SECONDS
    multiplier: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)  # jitter, not secrets
    attempt: int = 0

    def next(self) -> float:
        """Return the next delay and advance."""
        base = min(self.maximum, self.initial * self.multiplier ** self.attempt)
        self.attempt += 1
        spread = self.jitter * base
        return min(self.maximum, base - spread + self.rng.random() * 2 * spread)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self.attempt = 0


def retry_delay(backoff_delay: float, remaining: float | None, escalate_in: float,
                floor: float = MIN_RETRY_SECONDS) -> float:
    """Bound a backoff delay by the lease and by the escalation deadline.

    While the lease is alive, never sleep past half of what is left of it (but
    not less than ``floor``, the backoff's first step), so a few attempts land
    before it expires; never sleep past the moment the outage becomes an
    escalation, so that is reported on time.
    """
    delay = backoff_delay
    if remaining is not None and remaining > 0:
        delay = min(delay, max(remaining / 2, floor))
    delay = min(delay, escalate_in)
    return max(delay, MIN_RETRY_SECONDS)


# -- Vault calls shared by the manager and the commands -----------------------------------


def resolve_address(address: str | None) -> str:
    """Return ``--address``, else ``$VAULT_ADDR``/``$BAO_ADDR`` (the rule of rotation.address)."""
    return vault_address.resolve(address).url


# What the database plugins put in a 500 when the database, not Vault, failed. The
# driver's text is never repeated (it names the database user); only the reason is.
_DATABASE_REASONS = (
    ("connection refused", "connection refused"),
    ("password authentication failed", "the database refused Vault's credentials"),
    ("no such host", "the database host name does not resolve"),
    ("i/o timeout", "the database did not answer in time"),
    ("timeout", "the database did not answer in time"),
    ("failed to connect", "cannot connect to the database"),
    ("unable to start transaction", "cannot open a database transaction"),
    ("sqlstate", "the database rejected a statement"),
    ("pq: ", "the database rejected a statement"),
)


def database_failure(message: str) -> str | None:
    """Return why the database behind Vault failed, if a 500's message says it did."""
    lowered = message.lower()
    return next((reason for marker, reason in _DATABASE_REASONS if marker in lowered), None)


def revoke_lease(client: hvac.Client, lease_id: str) -> None:
    """Revoke ``lease_id`` (Vault answers 204 even for a lease that is already gone)."""
    with vault_errors(client.url, f"revoking lease {lease_id}"):
        client.sys.revoke_lease(lease_id)


def lease_is_live(client: hvac.Client, lease_id: str) -> bool | None:
    """Return whether Vault still knows ``lease_id``; ``None`` if the token may not look."""
    try:
        with vault_errors(client.url, f"looking up lease {lease_id}"):
            try:
                client.sys.read_lease(lease_id)
            except hvac.exceptions.InvalidRequest:  # "invalid lease": revoked or expired
                return False
    except CheckFailed as exc:
        if "permission denied" in str(exc):
            return None
        raise
    return True


class LeaseGone(Exception):
    """Vault no longer knows the lease (revoked, expired, or lost with its storage)."""


# -- the journal of issued-but-not-handed-over leases -------------------------------------


_JOURNAL_HINT = ("make the --output file's directory writable and run again; a lease this run "
                 "issued and could not hand over is revoked (see the log)")


class LeaseJournal:
    """Lease ids issued but not yet handed over, on disk (mode 0600, ids only).

    An id is added the moment Vault answers and removed once the hand-over is
    done; a run that died in between leaves it here and the next run revokes
    it (:func:`recover_journal`). The file is removed when it is empty.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def pending(self) -> list[str]:
        """Return the ids in the journal (none when the file does not exist)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            # The output location stopped being usable: bad input (exit 2), as for the file.
            raise BadInput(f"{self.path}: cannot read the lease journal ({exc.strerror})",
                           hint=_JOURNAL_HINT) from None
        try:
            doc = json.loads(raw)
            ids = doc["pending"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{self.path}: not a lease journal (expected {{\"pending\": [ids]}})",
                           hint="inspect it, revoke the ids it names, then delete it") from None
        return list(ids)

    def _write(self, ids: list[str]) -> None:
        try:
            if ids:
                write_text_atomic(self.path, json.dumps({"pending": ids}) + "\n", mode=0o600)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        except OSError as exc:
            raise BadInput(f"{self.path}: cannot write the lease journal ({exc.strerror})",
                           hint=_JOURNAL_HINT) from None

    def add(self, lease_id: str) -> None:
        """Record ``lease_id`` as issued and not handed over."""
        self._write([*self.pending(), lease_id])

    def remove(self, lease_id: str) -> None:
        """Forget ``lease_id`` (handed over, or revoked)."""
        self._write([i for i in self.pending() if i != lease_id])


def recover_journal(client: hvac.Client, journal: LeaseJournal, *,
                    keep: str | None = None) -> list[str]:
    """Revoke every lease a previous run left in ``journal`` (except ``keep``); return them.

    ``keep`` is the lease whose credentials the output file holds: that one
    was handed over after all (the run died before it could clear the entry).
    """
    revoked = []
    for lease_id in journal.pending():
        if lease_id != keep:
            revoke_lease(client, lease_id)
            log.warning("revoked lease %s: a previous run issued it but never handed it over",
                        lease_id)
            revoked.append(lease_id)
        journal.remove(lease_id)
    return revoked


# -- the manager --------------------------------------------------------------------------


class DynamicCredentialManager:
    """Issue, renew, replace and revoke the credentials of one database role.

    Drive it with :meth:`run` (one manager, blocking, stoppable with
    :meth:`stop`) or with :meth:`issue` followed by :meth:`step` calls at the
    times it returns (what :class:`ManagerGroup` does). ``clock`` (monotonic
    seconds), ``wall_clock`` (epoch seconds), ``sleep`` and ``rng`` are
    injectable so the schedule can be checked without waiting.
    """

    def __init__(
        self,
        client: hvac.Client,
        *,
        role: str,
        on_credential: Callable[[Credential], None],
        mount: str = "database",
        on_renewal: Callable[[Credential], None] | None = None,
        refresh_margin: float = 0.0,
        increment: int | None = None,
        replaced_lease: ReplacedLease = "revoke",
        revoke_on_stop: bool = True,
        revoke_on_failure: bool = True,
        escalate_after: float = DEFAULT_ESCALATE_AFTER_SECONDS,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL_SECONDS,
        backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS,
        journal: LeaseJournal | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if refresh_margin < 0:
            raise BadInput(f"refresh margin must be >= 0 seconds, got {refresh_margin}")
        if escalate_after <= 0:
            raise BadInput(f"escalate-after must be > 0 seconds, got {escalate_after}")
        if increment is not None and increment <= 0:
            raise BadInput(f"renewal increment must be > 0 seconds, got {increment}")
        if replaced_lease not in ("revoke", "expire"):
            raise BadInput(f"replaced lease policy must be revoke or expire, got {replaced_lease}")
        self._client = client
        self._address: str = client.url
        self.role = role
        self.mount = mount
        self._on_credential = on_credential
        self._on_renewal = on_renewal
        self.refresh_margin = float(refresh_margin)
        self._increment = increment
        self.replaced_lease: ReplacedLease = replaced_lease
        self.revoke_on_stop = revoke_on_stop
        self.revoke_on_failure = revoke_on_failure
        self.escalate_after = float(escalate_after)
        self._journal = journal
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        # Jitter only spreads clients apart; it needs no cryptographic randomness.
        self._rng = rng or random.Random()  # noqa: S311
        self._backoff = Backoff(initial=backoff_initial, maximum=backoff_max, rng=self._rng)
        self._stop = threading.Event()
        self.stats = ManagerStats()

        self._current: Credential | None = None
        self._base_duration = 0.0  # the lease length as issued: what renewals ask for
        self._expires_clock = 0.0  # expiry of the current lease on ``clock``
        self._grace = 0.0
        self._lead = 0.0
        self._final = False  # True: the lease cannot be extended; replace it at expiry - lead
        self._dead = False  # True: Vault no longer has the lease; issue new credentials
        self._next_at = 0.0
        self._unavailable_since: float | None = None
        self._replaced: dict[str, float] = {}  # replaced leases whose revocation failed
        self._margin_warned = False

    # -- read-only state ------------------------------------------------------------------

    @property
    def current(self) -> Credential | None:
        """The credential last handed over (``None`` before the first issue)."""
        return self._current

    @property
    def next_action_at(self) -> float:
        """When (on ``clock``) the manager next needs :meth:`step`."""
        return self._next_at

    @property
    def grace(self) -> float:
        """The current lease's grace period in seconds."""
        return self._grace

    @property
    def lead(self) -> float:
        """How long before expiry the manager acts on the current lease."""
        return self._lead

    @property
    def final(self) -> bool:
        """Whether the current lease can no longer be extended (``max_ttl`` reached)."""
        return self._final

    @property
    def expires_at_clock(self) -> float:
        """The current lease's expiry on ``clock`` (counted from when it was requested)."""
        return self._expires_clock

    # -- Vault calls ----------------------------------------------------------------------

    def _request_credential(self) -> tuple[Credential, float]:
        sent, sent_wall = self._clock(), self._wall()
        what = f"issuing credentials for role {self.role} at mount {self.mount}"
        with vault_errors(self._address, what):
            try:
                resp = self._client.secrets.database.generate_credentials(
                    self.role, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                raise BadInput(f"no database secrets engine is mounted at {describe(self.mount)}",
                               hint="check --mount (`bao secrets list`)") from None
            except hvac.exceptions.InvalidRequest as exc:
                if "unknown role" in str(exc):
                    raise BadInput(f"role {describe(self.role)} does not exist at mount "
                                   f"{describe(self.mount)}",
                                   hint=f"bao list {self.mount}/roles (vault on HashiCorp "
                                        "Vault)" if plainly_not_secret(self.mount)
                                   else "bao secrets list") from None
                raise
            except hvac.exceptions.InternalServerError as exc:
                reason = database_failure(str(exc))
                if reason is None:
                    raise
                raise DatabaseUnavailable(
                    f"the database behind {self.mount}/ did not serve role {self.role} "
                    f"({reason}) while {what}; Vault itself answered",
                    hint=f"check the database server and the connection Vault uses (`bao read "
                         f"{self.mount}/config/<name>`); nothing was issued") from None
        lease_id, duration = resp.get("lease_id"), resp.get("lease_duration")
        data = resp.get("data")
        if not lease_id or not isinstance(duration, int) or duration <= 0 \
                or not isinstance(data, dict):
            # A lease we cannot track must not stay alive: give it back at once.
            if lease_id:
                revoke_lease(self._client, str(lease_id))
            raise CheckFailed(f"role {self.role} at mount {self.mount} returned no usable lease")
        cred = Credential(
            lease_id=str(lease_id), lease_duration=duration,
            renewable=bool(resp.get("renewable")), role=self.role, mount=self.mount,
            issued_at=sent_wall, expires_at=sent_wall + duration, data=data,
        )
        self.stats.issued += 1
        return cred, sent

    def _adopt(self, cred: Credential, sent: float) -> None:
        """Make ``cred`` (handed over) the current lease and derive its schedule."""
        duration = cred.lease_duration
        self._current = cred
        self._base_duration = float(duration)
        self._expires_clock = sent + duration
        self._grace = grace_seconds(duration, self._rng)
        self._lead = lead_seconds(duration, self._grace, self.refresh_margin)
        self._final = not cred.renewable
        self._dead = False
        if self.refresh_margin > duration * MAX_MARGIN_FRACTION and not self._margin_warned:
            self._margin_warned = True
            log.warning("refresh margin %.0fs is more than half of the %ds lease of role %s: "
                        "acting at half-life instead", self.refresh_margin, duration, self.role)

    def _renew(self, cred: Credential) -> Credential:
        asked = self._increment or int(self._base_duration)
        sent, sent_wall = self._clock(), self._wall()
        with vault_errors(self._address, f"renewing lease {cred.lease_id}"):
            try:
                resp = self._client.sys.renew_lease(cred.lease_id, increment=asked)
            except hvac.exceptions.InvalidRequest as exc:  # "lease not found": expired/revoked
                raise LeaseGone(str(exc).split(",")[0]) from None
        got = resp.get("lease_duration")
        if not isinstance(got, int) or got < 0:
            raise LeaseGone(f"renewal returned lease_duration={got!r}")
        # got == 0: under a second to max_ttl; the lease still exists, so it is replaced
        # (and revoked) like any capped lease rather than treated as gone.
        renewed = replace(cred, lease_duration=got, renewable=bool(resp.get("renewable")),
                          expires_at=sent_wall + got, renewed_at=sent_wall)
        self._expires_clock = sent + got
        if got < asked or not renewed.renewable:
            # max_ttl reached: renewing again cannot push the expiry out any further.
            self._final = True
            log.info("lease %s reached its max TTL (asked %ds, got %ds): new credentials "
                     "%.1fs before it expires at %s", cred.lease_id, asked, got, self._lead,
                     iso(renewed.expires_at))
        else:
            log.info("renewed lease %s until %s", cred.lease_id, iso(renewed.expires_at))
        return renewed

    # -- issue and hand over --------------------------------------------------------------

    def _issue_and_hand_over(self) -> Credential:
        """Issue, journal, hand over; adopt the new lease only once it was handed over."""
        cred, sent = self._request_credential()
        handed_over = False
        try:
            if self._journal is not None:
                self._journal.add(cred.lease_id)
            self._on_credential(cred)
            handed_over = True
        finally:
            if not handed_over:  # includes KeyboardInterrupt / SIGTERM mid-write
                self._revoke_unhanded(cred)
        if self._journal is not None:
            try:
                self._journal.remove(cred.lease_id)
            except RotationError as exc:
                log.warning("%s (lease %s was handed over; the next run will not revoke it "
                            "while the output file holds it)", exc, cred.lease_id)
        self._adopt(cred, sent)
        log.info("issued lease %s for role %s at mount %s (%ds, renewable=%s), expires at %s",
                 cred.lease_id, self.role, self.mount, cred.lease_duration, cred.renewable,
                 iso(cred.expires_at))
        return cred

    def _revoke_unhanded(self, cred: Credential) -> None:
        try:
            revoke_lease(self._client, cred.lease_id)
        except RotationError as exc:
            log.error("lease %s was issued but not handed over, and revoking it failed: %s; "
                      "revoke it with `python -m rotation revoke --lease-id %s` (it expires "
                      "at %s)", cred.lease_id, exc, cred.lease_id, iso(cred.expires_at))
            return
        self.stats.revoked += 1
        if self._journal is not None:
            try:
                self._journal.remove(cred.lease_id)
            except RotationError as exc:
                log.warning("%s", exc)
        log.warning("revoked lease %s: it was issued but could not be handed over",
                    cred.lease_id)

    def _schedule_current(self, now: float) -> None:
        remaining = self._expires_clock - now
        if self._final:
            self._next_at = now + max(0.0, remaining - self._lead)
        else:
            self._next_at = now + renew_delay(remaining, self._grace, self._lead)

    def issue(self) -> Credential:
        """Issue the first credentials and hand them over; raise on any failure.

        The first issue fails fast (no backoff): an operator starting the
        command learns at once that Vault is unreachable or the role is wrong.
        """
        cred = self._issue_and_hand_over()
        self._schedule_current(self._clock())
        return cred

    def _replace(self, now: float) -> None:
        old, old_dead = self._current, self._dead
        old_expires = self._expires_clock
        new = self._issue_and_hand_over()
        if old is not None:
            self.stats.replacements += 1
            if self._clock() > old_expires:
                self.stats.late_replacements += 1
        if old is None or old_dead or self._clock() >= old_expires:
            log.info("replaced lease %s with %s", old.lease_id if old else "-", new.lease_id)
        elif self.replaced_lease == "revoke":
            try:
                revoke_lease(self._client, old.lease_id)
                self.stats.revoked += 1
                log.info("replaced lease %s with %s and revoked the old one",
                         old.lease_id, new.lease_id)
            except RotationError as exc:
                self._replaced[old.lease_id] = old_expires
                log.warning("replaced lease %s with %s, but revoking the old one failed (%s); "
                            "it expires at %s", old.lease_id, new.lease_id, exc,
                            iso(old.expires_at))
        else:
            log.info("replaced lease %s with %s; the old one is left to expire at %s",
                     old.lease_id, new.lease_id, iso(old.expires_at))
        self._schedule_current(self._clock())

    def _retry_replaced_revocations(self) -> None:
        now = self._clock()
        for lease_id, expires in list(self._replaced.items()):
            if now >= expires:
                del self._replaced[lease_id]
                continue
            with contextlib.suppress(RotationError):
                revoke_lease(self._client, lease_id)
                del self._replaced[lease_id]
                self.stats.revoked += 1
                log.info("revoked replaced lease %s", lease_id)

    # -- the loop -------------------------------------------------------------------------

    def step(self) -> float:
        """Do whatever is due now (renew, replace, retry); return when to call again.

        Raises :class:`Escalation` once Vault has been unreachable longer than
        ``escalate_after``, and any non-transient error (bad token, unknown
        role, a hand-over that failed) as it comes.
        """
        now = self._clock()
        if self._stop.is_set() or now < self._next_at:
            return self._next_at
        lag = now - self._next_at
        cpu_before = time.thread_time()
        try:
            cred = self._current
            if cred is None or self._dead or now >= self._expires_clock or self._final:
                self._replace(now)
            else:
                if self._unavailable_since is None:  # retries in an outage are not "late"
                    self.stats.max_lag_seconds = max(self.stats.max_lag_seconds, lag)
                    if now > self._expires_clock - self._grace:
                        self.stats.late_renewals += 1
                        log.warning("renewal of lease %s is late by %.2fs", cred.lease_id, lag)
                renewed = self._renew(cred)
                self._current = renewed
                self.stats.renewals += 1
                self._schedule_current(self._clock())
                if self._on_renewal is not None:
                    self._on_renewal(renewed)
        except VaultUnavailable as exc:
            self._unavailable(now, exc)
            return self._next_at
        except LeaseGone as exc:
            assert self._current is not None
            log.warning("lease %s is gone (%s): issuing new credentials",
                        self._current.lease_id, exc)
            self._dead = True
            self._next_at = self._clock()
            return self._next_at
        finally:
            self.stats.cpu_seconds += time.thread_time() - cpu_before
        if self._unavailable_since is not None:
            log.info("Vault at %s answers again after %.1fs", display_url(self._address),
                     self._clock() - self._unavailable_since)
            self._unavailable_since = None
        self._backoff.reset()
        if self._replaced:
            self._retry_replaced_revocations()
        return self._next_at

    def _unavailable(self, now: float, exc: VaultUnavailable) -> None:
        self.stats.unavailable_errors += 1
        if self._unavailable_since is None:
            self._unavailable_since = now
        down_for = now - self._unavailable_since
        lease = self._current.lease_id if self._current else "-"
        if down_for >= self.escalate_after:
            if self._current is None:
                state = "no lease issued yet"
            elif self._dead or now >= self._expires_clock:
                state = f"lease {lease} has expired"
            else:
                state = f"lease {lease} expires at {iso(self._current.expires_at)}"
            raise Escalation(
                f"Vault at {display_url(self._address)} has been unavailable for {down_for:.0f}s "
                f"(limit {self.escalate_after:.0f}s): {exc}; {state}",
                hint="page the security on-call (runbook: Failure Handling 3); once Vault "
                     f"is back, revoke leftovers with `python -m rotation revoke --lease-id "
                     f"{lease}`",
            )
        remaining = None if self._dead else self._expires_clock - now
        escalate_in = self._unavailable_since + self.escalate_after - now
        delay = retry_delay(self._backoff.next(), remaining, escalate_in,
                            floor=self._backoff.initial)
        self._next_at = now + delay
        log.warning("%s; lease %s, retrying in %.1fs (unavailable for %.1fs)", exc, lease,
                    delay, down_for)

    def stop(self) -> None:
        """Ask :meth:`run` to stop at its next wake-up (safe from signal handlers)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._stop.wait(seconds)

    def run(self) -> CloseReport:
        """Issue if needed, then keep the credentials alive until :meth:`stop`.

        On the way out the current lease is revoked per ``revoke_on_stop``
        (a clean stop) or ``revoke_on_failure`` (an exception, which is
        re-raised after the revocation was attempted).
        """
        failed = True
        try:
            if self._current is None and not self._stop.is_set():
                self.issue()
            while not self._stop.is_set():
                wake = self.step()
                delay = wake - self._clock()
                if delay > 0:
                    self._pause(delay)
            failed = False
        finally:
            report = self.close(revoke=self.revoke_on_failure if failed else self.revoke_on_stop)
        return report

    def close(self, *, revoke: bool) -> CloseReport:
        """Revoke the current lease (when ``revoke``) and replaced ones still pending.

        Never raises for Vault errors: a lease it could not revoke is logged
        with the command that revokes it, and listed in ``not_revoked``.
        """
        revoked: list[str] = []
        failed: list[str] = []
        targets = list(self._replaced)
        self._replaced.clear()
        cred = self._current
        if cred is not None and not self._dead and self._clock() < self._expires_clock:
            if revoke:
                targets.append(cred.lease_id)
            else:
                log.info("leaving lease %s alive until %s", cred.lease_id, iso(cred.expires_at))
        for lease_id in targets:
            try:
                revoke_lease(self._client, lease_id)
            except RotationError as exc:
                failed.append(lease_id)
                log.error("could not revoke lease %s: %s; revoke it with `python -m rotation "
                          "revoke --lease-id %s`", lease_id, exc, lease_id)
                continue
            revoked.append(lease_id)
            self.stats.revoked += 1
            log.info("revoked lease %s", lease_id)
        if cred is not None and cred.lease_id in revoked:
            self._dead = True
        return CloseReport(revoked, failed)


# -- many managers, one process -----------------------------------------------------------


class ManagerGroup:
    """Keep many managers' leases alive with one dispatcher thread and a worker pool.

    Each manager sits in a heap keyed by its next action time; the dispatcher
    hands due managers to the pool and puts them back with the time their
    :meth:`~DynamicCredentialManager.step` returned, so a manager is never
    stepped by two workers at once. The first exception a manager raises (an
    escalation, a bad token) stops the group; :meth:`run` closes every
    manager and then re-raises it.
    """

    def __init__(self, *, workers: int = 8, clock: Clock = time.monotonic) -> None:
        self._workers = workers
        self._clock = clock
        self._heap: list[tuple[float, int, DynamicCredentialManager]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False
        self._failure: BaseException | None = None
        self._inflight: set[Future[float]] = set()
        self.managers: list[DynamicCredentialManager] = []

    def add(self, manager: DynamicCredentialManager) -> None:
        """Start keeping ``manager``'s lease alive (it may have issued already)."""
        with self._cond:
            self.managers.append(manager)
            heapq.heappush(self._heap, (manager.next_action_at, next(self._seq), manager))
            self._cond.notify()

    def stop(self) -> None:
        """Make :meth:`run` return once the steps in flight have finished."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _done(self, manager: DynamicCredentialManager, future: Future[float]) -> None:
        with self._cond:
            self._inflight.discard(future)
            exc = future.exception()
            if exc is not None:
                if self._failure is None:
                    self._failure = exc
                self._stopping = True
            else:
                heapq.heappush(self._heap, (future.result(), next(self._seq), manager))
            self._cond.notify_all()

    def _next_due(self, deadline: float | None) -> list[DynamicCredentialManager]:
        """Block until some managers are due (returned) or the group stops (empty list)."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                if deadline is not None and now >= deadline:
                    self._stopping = True
                    break
                if self._heap and self._heap[0][0] <= now:
                    due = []
                    while self._heap and self._heap[0][0] <= now:
                        due.append(heapq.heappop(self._heap)[2])
                    return due
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self._cond.wait(wait)
            return []

    def run(self, duration: float | None = None) -> list[CloseReport]:
        """Dispatch until :meth:`stop`, ``duration`` seconds, or a failure; then close all."""
        deadline = None if duration is None else self._clock() + duration
        with ThreadPoolExecutor(self._workers, thread_name_prefix="lease") as pool:
            while due := self._next_due(deadline):
                for manager in due:
                    future = pool.submit(manager.step)
                    with self._cond:
                        self._inflight.add(future)
                    future.add_done_callback(functools.partial(self._done, manager))
            with self._cond:
                inflight = list(self._inflight)
            wait_futures(inflight)
            failed = self._failure is not None

            def close(manager: DynamicCredentialManager) -> CloseReport:
                revoke = manager.revoke_on_failure if failed else manager.revoke_on_stop
                return manager.close(revoke=revoke)

            reports = list(pool.map(close, self.managers))
        if self._failure is not None:
            raise self._failure
        return reports
