"""The active node SIGKILLed mid-work on the real raft cluster: nothing lost, nothing twice.

Scenarios (tests/reliability/leader_loss.py, also run by bench/faults.py):

* concurrent ``kv-put`` merge-retries through standbys: every write either
  committed exactly once (one version, the one it reported) or reported
  failure (and then is in no version); no version drops a key another writer
  merged; the secret's version count equals the committed writes;
* the dynamic credential manager holding N leases through a standby: it
  reaches the new leader, no renewal is sent after its lease ended, no
  credential is replaced because its lease lapsed, no renewal slipped into
  its grace window outside the outage, and at stop every lease it issued is
  revoked and no database login is left.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import RaftCluster
from tests.reliability.leader_loss import concurrent_kv_puts, lease_holders
from tests.rotation.dynamic_support import configure_database

pytestmark = pytest.mark.integration

ROLE = "tradepulse-leader-loss"



def test_leader_killed_during_concurrent_kv_put_merge_retries(
    cluster: RaftCluster, stack_repo: Path
) -> None:
    try:
        outcome = concurrent_kv_puts(cluster, stack_repo, writers=4, rounds=5)
    finally:
        cluster.client().sys.disable_secrets_engine("race")
    print(f"leader loss / kv-put: {outcome}")
    assert outcome.notes == []
    assert outcome.values_lost == 0 and outcome.double_writes == 0
    details = outcome.details
    assert details["versions"] == details["committed"] == outcome.operations - outcome.failed
    assert details["unclaimed_versions"] == []
    assert outcome.in_flight >= 1, "no write was in flight when the leader died"
    assert details["merge_retries"] >= 1, "the writers never conflicted: no merge-retry ran"
    # With --unavailable-timeout 60 every writer rides out the election.
    assert outcome.failed == 0, details["failures"]
    assert math.isfinite(outcome.recovery_seconds) and outcome.recovery_seconds < 60


def test_leader_killed_while_the_credential_manager_holds_leases(
    cluster: RaftCluster, postgres: Any
) -> None:
    configure_database(cluster.client(), postgres, {ROLE: (20, 600)})

    def logins(usernames: list[str]) -> int:
        names = ", ".join(f"'{name}'" for name in usernames)  # Vault-made names: [a-zA-Z0-9-]
        return int(postgres.psql(f"select count(*) from pg_roles where rolname in ({names})"))

    try:
        outcome = lease_holders(cluster, ROLE, leases=8, lease_seconds=20, run_seconds=40,
                                pg_roles=logins)
    finally:
        cluster.client().sys.disable_secrets_engine("database")
    print(f"leader loss / leases: {outcome}")
    details = outcome.details
    assert outcome.notes == []
    assert outcome.values_lost == 0, details  # no lapsed renewal, no late replacement
    assert details["late_renewals"] == 0, details
    assert outcome.leases_leaked == 0 and details["live_after_stop"] == []
    assert details["database_logins_left"] == 0
    assert details["revoked_at_stop"] == 8
    assert outcome.in_flight >= 1, "no renewal met the election"
    assert details["renewals"] >= 8 * 2, details  # renewed before and after the kill
    assert math.isfinite(outcome.recovery_seconds), "no renewal succeeded after the kill"
