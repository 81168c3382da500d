"""Apply faults with the real engine on the raft cluster (tests/e2e/apply_faults.py).

* The leader SIGKILLed while ``pulumi up`` writes a rotated secret: the secret
  ends at exactly N or N-1 (never N+1), ``verify`` reports which, and
  re-running ``pulumi up`` converges to N without a check-and-set conflict.

``pulumi up`` itself SIGKILLed mid-apply (prod's S3 backend on moto) is not
tested here yet: its advice includes ``pulumi refresh``, which fails on a stack
that only renders its Kubernetes objects (no cluster configured). Preflight's
side of that fault is tested in tests/rotation/commands/test_preflight_interrupted_apply.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import RaftCluster
from tests.e2e.apply_faults import (
    leader_killed_during_up,
    moto_prod_backend,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(raft_cluster: RaftCluster) -> Iterator[RaftCluster]:
    """The session's cluster, healed after the test."""
    raft_cluster.active()
    try:
        yield raft_cluster
    finally:
        raft_cluster.heal()


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[tuple[str, int], dict[str, str]]]:
    """A moto S3 + KMS server with prod's state bucket and KMS alias."""
    with moto_prod_backend() as (endpoint, aws):
        for name, value in aws.items():
            monkeypatch.setenv(name, value)
        yield endpoint, aws


def test_leader_killed_during_pulumi_up_ends_at_n_or_n_minus_1_and_converges(
    engine: str, cluster: RaftCluster, postgres: Any, tmp_path: Path
) -> None:
    outcome = leader_killed_during_up(cluster, postgres, tmp_path)
    print(f"apply fault / leader: {outcome}")
    assert outcome.details["live_after_kill"] in (1, 2)  # N-1 or N, never N+1
    assert outcome.notes == [], outcome.notes  # verify agreed, re-run converged, no CAS
    assert outcome.details["rerun_exit"] == 0 and outcome.details["final_version"] == 2
    assert outcome.double_writes == 0 and outcome.values_lost == 0
