"""Apply faults with the real engine on the raft cluster (tests/e2e/apply_faults.py).

* The leader SIGKILLed while ``pulumi up`` writes a rotated secret: the secret
  ends at exactly N or N-1 (never N+1), ``verify`` reports which, and
  re-running ``pulumi up`` converges to N without a check-and-set conflict.

* ``pulumi up`` itself SIGKILLed (with its plugins: its session) mid-apply of a
  rotation, with prod's backend shape (state in S3, secrets under a KMS key:
  moto on loopback): ``preflight`` fails (exit 1) naming the stale lock and
  the pending operation, and its ``next_steps`` are exactly what the test runs,
  in order; after them ``preview --expect-no-changes`` is clean, ``verify``
  passes and Vault holds versions 1 and 2 only. The kill lands after the
  provider's write reached Vault and before the engine heard so (the balancer
  holds Vault's answers from the write on), so the killed apply's write *is*
  the rotation: ``adopt-pending`` records it and
  the re-run writes nothing (version 2's ``created_time`` is unchanged). The
  stack only renders its Kubernetes objects: no step may read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import RaftCluster
from tests.e2e.apply_faults import (
    PREFLIGHT_OUTPUT,
    leader_killed_during_up,
    moto_prod_backend,
    pulumi_killed_mid_apply,
)

pytestmark = pytest.mark.e2e



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


def test_pulumi_killed_mid_apply_preflight_says_what_converges(
    engine: str, cluster: RaftCluster, postgres: Any, tmp_path: Path,
    moto: tuple[tuple[str, int], dict[str, str]],
) -> None:
    endpoint, aws = moto
    outcome = pulumi_killed_mid_apply(cluster, postgres, tmp_path, endpoint, aws)
    print(f"apply fault / pulumi killed: {outcome}")
    report = outcome.details[PREFLIGHT_OUTPUT]
    assert outcome.details["preflight_exit"] == 1, report
    assert "stale Pulumi lock" in report and "the update was killed" in report, report
    assert ("updating secret/services/execution/session-signing-key (declared 2; its write "
            "landed: version 2 is live)") in report, report
    # The steps run (pulumi_killed_mid_apply runs next_steps as printed) are exactly these.
    assert outcome.details["next_steps"] == [
        "pulumi cancel --stack local --yes",
        "python -m rotation adopt-pending --stack local",
        "pulumi up --stack local",
        "python -m rotation verify --stack local",
    ]
    assert outcome.details["step_exits"] == [0, 0, 0, 0], outcome.notes
    assert outcome.details["preview_exit"] == 0, outcome.notes
    # The killed apply's write is the one rotation: exactly versions 1 and 2, 2 not rewritten.
    assert outcome.details["killed_write_landed"] is True
    assert outcome.details["versions"] == [1, 2]
    assert outcome.notes == [], outcome.notes
    assert outcome.double_writes == 0 and outcome.values_lost == 0
