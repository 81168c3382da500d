"""What a credential manager is told: how it keeps a lease, and the clocks it keeps time by.

Two values instead of a dozen constructor keywords: :class:`LeasePolicy` is
what an operator chooses (the command's flags, the benchmark's settings),
checked once where it is made; :class:`Clocks` is what tests replace so the
schedule can be driven without waiting. The manager itself
(:mod:`rotation.dynamic.manager`) takes one of each.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rotation.dynamic.schedule import DEFAULT_BACKOFF_INITIAL_SECONDS, DEFAULT_BACKOFF_MAX_SECONDS
from rotation.errors import BadInput

DEFAULT_ESCALATE_AFTER_SECONDS = 5 * 60  # 5m: the runbook's escalation limit
ReplacedLease = Literal["revoke", "expire"]
Clock = Callable[[], float]


@dataclass(frozen=True)
class LeasePolicy:
    """How one role's leases are kept alive, replaced, retried and given back.

    ``refresh_margin``: act at least this long before expiry (capped at half
    the lease). ``increment``: the renewal to ask for (default: the lease's
    own duration). ``replaced_lease``: revoke a lease once its replacement is
    handed over, or let it expire. ``revoke_on_stop`` / ``revoke_on_failure``:
    whether the current lease is revoked on a clean stop / on an error.
    ``escalate_after``: how long Vault may stay unreachable before the
    manager gives up with :class:`~rotation.errors.Escalation`.
    ``backoff_initial`` / ``backoff_max``: the retry backoff's bounds.
    """

    refresh_margin: float = 0.0
    increment: int | None = None
    replaced_lease: ReplacedLease = "revoke"
    revoke_on_stop: bool = True
    revoke_on_failure: bool = True
    escalate_after: float = DEFAULT_ESCALATE_AFTER_SECONDS
    backoff_initial: float = DEFAULT_BACKOFF_INITIAL_SECONDS
    backoff_max: float = DEFAULT_BACKOFF_MAX_SECONDS

    def __post_init__(self) -> None:
        """Refuse a policy the schedule cannot follow, before any lease is issued."""
        if self.refresh_margin < 0:
            raise BadInput(f"refresh margin must be >= 0 seconds, got {self.refresh_margin}")
        if self.escalate_after <= 0:
            raise BadInput(f"escalate-after must be > 0 seconds, got {self.escalate_after}")
        if self.increment is not None and self.increment <= 0:
            raise BadInput(f"renewal increment must be > 0 seconds, got {self.increment}")
        if self.replaced_lease not in ("revoke", "expire"):
            raise BadInput("replaced lease policy must be revoke or expire, "
                           f"got {self.replaced_lease}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise BadInput("backoff must satisfy 0 < initial <= max, got "
                           f"{self.backoff_initial} and {self.backoff_max}")


@dataclass(frozen=True)
class Clocks:
    """The time sources of a manager, and the random source of its jitter.

    ``monotonic`` schedules (seconds), ``wall`` stamps credentials (epoch
    seconds), ``sleep`` replaces the stoppable wait of :meth:`run` (None:
    wait on the stop event), ``rng`` draws the grace and backoff jitter.
    """

    monotonic: Clock = time.monotonic
    wall: Clock = time.time
    sleep: Callable[[float], None] | None = None
    # Jitter only spreads clients apart; it needs no cryptographic randomness.
    rng: random.Random = field(default_factory=random.Random)
