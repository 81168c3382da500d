"""LeasePolicy refuses what the schedule cannot follow, before any lease is issued."""

from __future__ import annotations

from typing import Any

import pytest

from rotation.dynamic.policy import DEFAULT_ESCALATE_AFTER_SECONDS, Clocks, LeasePolicy
from rotation.errors import BadInput


@pytest.mark.parametrize(("given", "message"), [
    ({"refresh_margin": -1}, "refresh margin must be >= 0 seconds, got -1"),
    ({"escalate_after": 0}, "escalate-after must be > 0 seconds, got 0"),
    ({"increment": 0}, "renewal increment must be > 0 seconds, got 0"),
    ({"replaced_lease": "keep"}, "replaced lease policy must be revoke or expire, got keep"),
    ({"backoff_initial": 0}, "backoff must satisfy 0 < initial <= max, got 0 and 60.0"),
    ({"backoff_initial": 5, "backoff_max": 2}, "backoff must satisfy 0 < initial <= max, got 5"),
])
def test_a_policy_the_schedule_cannot_follow_is_refused(given: dict[str, Any],
                                                        message: str) -> None:
    with pytest.raises(BadInput) as caught:
        LeasePolicy(**given)
    assert str(caught.value).startswith(message)


def test_the_defaults_are_the_runbooks() -> None:
    policy = LeasePolicy()
    assert policy.escalate_after == DEFAULT_ESCALATE_AFTER_SECONDS == 300
    assert (policy.replaced_lease, policy.revoke_on_stop, policy.revoke_on_failure) == (
        "revoke", True, True)
    assert policy.increment is None and policy.refresh_margin == 0


def test_each_manager_gets_a_jitter_source_of_its_own() -> None:
    # A shared default generator would make a fleet's jitter one sequence between them.
    assert Clocks().rng is not Clocks().rng
