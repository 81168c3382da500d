"""One database role's stream of credentials: issue, renew, replace, hand over, revoke."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import hvac
import hvac.exceptions

from kernel.redact import describe, display_url, plainly_not_secret
from rotation.dynamic.journal import LeaseJournal
from rotation.dynamic.leases import CREDENTIALS_REFUSED, LeaseGone, database_failure, revoke_lease
from rotation.dynamic.policy import Clocks, LeasePolicy
from rotation.dynamic.schedule import (
    MAX_MARGIN_FRACTION,
    Backoff,
    grace_seconds,
    lead_seconds,
    renew_delay,
    retry_delay,
)
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


class DynamicCredentialManager:
    """Issue, renew, replace and revoke the credentials of one database role.

    Drive it with :meth:`run` (one manager, blocking, stoppable with
    :meth:`stop`) or with :meth:`issue` followed by :meth:`step` calls at the
    times it returns (what :class:`ManagerGroup` does). ``policy``
    (:class:`~rotation.dynamic.policy.LeasePolicy`) is how the leases are
    kept; ``clocks`` (:class:`~rotation.dynamic.policy.Clocks`) are injectable
    so the schedule can be checked without waiting.
    """

    def __init__(
        self,
        client: hvac.Client,
        *,
        role: str,
        on_credential: Callable[[Credential], None],
        mount: str = "database",
        on_renewal: Callable[[Credential], None] | None = None,
        policy: LeasePolicy | None = None,
        journal: LeaseJournal | None = None,
        clocks: Clocks | None = None,
    ) -> None:
        self._client = client
        self._address: str = client.url
        self.role = role
        self.mount = mount
        self._on_credential = on_credential
        self._on_renewal = on_renewal
        self.policy = policy or LeasePolicy()
        self._journal = journal
        clocks = clocks or Clocks()
        self._clock = clocks.monotonic
        self._wall = clocks.wall
        self._sleep = clocks.sleep
        self._rng = clocks.rng
        self._backoff = Backoff(initial=self.policy.backoff_initial,
                                maximum=self.policy.backoff_max, rng=self._rng)
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

    def _database_hint(self, reason: str) -> str:
        """Return what to look at when the database refused what Vault asked of it."""
        hint = (f"check the database server and the connection Vault uses (`bao read "
                f"{self.mount}/config/<name>`); nothing was issued")
        if reason == CREDENTIALS_REFUSED:
            # Measured (bench/rotate_root_race.py): every issue sent beside a rotate-root of
            # the connection fails so, until the new root password is in place.
            hint = (f"re-run in a few seconds if the connection's root password is being "
                    f"rotated (`pulumi up` of a root_rotation bump); if it persists, the root "
                    f"password Vault holds is not the database's: {hint}")
        return hint

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
                    hint=self._database_hint(reason)) from None
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
        margin = self.policy.refresh_margin
        self._lead = lead_seconds(duration, self._grace, margin)
        self._final = not cred.renewable
        self._dead = False
        if margin > duration * MAX_MARGIN_FRACTION and not self._margin_warned:
            self._margin_warned = True
            log.warning("refresh margin %.0fs is more than half of the %ds lease of role %s: "
                        "acting at half-life instead", margin, duration, self.role)

    def _renew(self, cred: Credential) -> Credential:
        asked = self.policy.increment or int(self._base_duration)
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
        elif self.policy.replaced_lease == "revoke":
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
        if down_for >= self.policy.escalate_after:
            if self._current is None:
                state = "no lease issued yet"
            elif self._dead or now >= self._expires_clock:
                state = f"lease {lease} has expired"
            else:
                state = f"lease {lease} expires at {iso(self._current.expires_at)}"
            raise Escalation(
                f"Vault at {display_url(self._address)} has been unavailable for {down_for:.0f}s "
                f"(limit {self.policy.escalate_after:.0f}s): {exc}; {state}",
                hint="page the security on-call (runbook: Failure Handling 3); once Vault "
                     f"is back, revoke leftovers with `python -m rotation revoke --lease-id "
                     f"{lease}`",
            )
        remaining = None if self._dead else self._expires_clock - now
        escalate_in = self._unavailable_since + self.policy.escalate_after - now
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
            revoke = self.policy.revoke_on_failure if failed else self.policy.revoke_on_stop
            report = self.close(revoke=revoke)
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
