"""The renewal schedule and the retry backoff of rotation.dynamic.schedule (pure functions)."""

from __future__ import annotations

import random

import pytest

from rotation.dynamic.schedule import Backoff, grace_seconds, lead_seconds, renew_delay, retry_delay

# -- the schedule's arithmetic ------------------------------------------------------------


@pytest.mark.parametrize("lease", [2, 300, 3600])
def test_grace_is_ten_percent_of_the_lease_plus_up_to_ten_percent_jitter(lease: int) -> None:
    rng = random.Random(7)
    graces = [grace_seconds(lease, rng) for _ in range(2000)]
    assert min(graces) >= 0.1 * lease
    assert max(graces) < 0.2 * lease
    # the jitter really spreads clients: both halves of the jitter range are used
    assert min(graces) < 0.12 * lease and max(graces) > 0.18 * lease
    assert grace_seconds(0, rng) == 0.0


def test_renewal_comes_at_two_thirds_of_the_lease_plus_a_third_of_the_grace() -> None:
    # Vault's lifetime watcher: sleep = 2/3 remaining + grace/3, when the margin allows it.
    assert renew_delay(300, grace=40, lead=40) == pytest.approx(200 + 40 / 3)
    assert renew_delay(90, grace=12, lead=12) == pytest.approx(60 + 4)


def test_refresh_margin_is_a_floor_on_how_early_the_manager_acts() -> None:
    # The runbook: a 300 s lease, --refresh-margin 120 -> act no later than 180 s in.
    lead = lead_seconds(300, grace=40, refresh_margin=120)
    assert lead == 120
    assert renew_delay(300, grace=40, lead=lead) == pytest.approx(180)
    # a small margin changes nothing: the grace already acts earlier
    assert lead_seconds(300, grace=40, refresh_margin=5) == 40


def test_short_leases_are_acted_on_at_least_two_seconds_before_expiry() -> None:
    # Vault counts lease age in whole seconds: a renewal in the last second returns 0.
    assert lead_seconds(6, grace=0.7, refresh_margin=0) == 2
    assert lead_seconds(2, grace=0.3, refresh_margin=0) == 1  # still at most half the lease


def test_a_margin_longer_than_half_the_lease_is_capped_so_renewal_cannot_spin() -> None:
    lead = lead_seconds(4, grace=0.5, refresh_margin=120)
    assert lead == 2
    assert renew_delay(4, grace=0.5, lead=lead) == pytest.approx(2)


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(initial=1, maximum=10, jitter=0, rng=random.Random(1))
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next() == 1
    jittered = [Backoff(initial=4, maximum=100, jitter=0.5, rng=random.Random(seed)).next()
                for seed in range(200)]
    assert min(jittered) >= 2 and max(jittered) <= 6 and max(jittered) - min(jittered) > 3


def test_retries_are_bounded_by_the_remaining_lease_and_the_escalation_deadline() -> None:
    assert retry_delay(30, remaining=10, escalate_in=300) == 5  # half of what is left
    assert retry_delay(30, remaining=None, escalate_in=300) == 30  # lease already dead
    assert retry_delay(30, remaining=100, escalate_in=3) == 3  # escalate on time
    assert retry_delay(30, remaining=0.01, escalate_in=300) == pytest.approx(0.1)  # no spin
    assert retry_delay(30, remaining=1, escalate_in=300, floor=1) == 1  # not below 1st step
