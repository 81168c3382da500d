"""The renewal schedule of a lease and the backoff of retries, as pure functions.

They can be checked without a clock. The schedule, per lease of ``D`` seconds:

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
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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
