"""Fault results table: each fault, what was in flight, values lost, double writes, leases
leaked, time to recover.

Starts its own three-node OpenBao raft cluster (``tests/cluster.py``) and
PostgreSQL (``tests/servers.py``) and runs the leader-loss scenarios of
``tests/reliability/leader_loss.py`` - the same functions whose invariants
the tests assert - then, with ``--pulumi`` (the toolchain on PATH), the
apply faults of ``tests/e2e/apply_faults.py``: the leader killed during
``pulumi up`` of a rotation, and ``pulumi up`` itself SIGKILLed on the S3
backend (moto). Prints the Markdown table quoted in docs/faults.md.

Run from the repository root:  python bench/faults.py [--pulumi]
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, emit
from infra.audit_config import render_audit_hcl
from kernel.spec import load_stack_file
from tests.cluster import RaftCluster, start_raft_cluster
from tests.reliability.leader_loss import FaultOutcome, concurrent_kv_puts, lease_holders
from tests.rotation.dynamic_support import configure_database
from tests.servers import start_postgres, temporary_dir

HEADERS = ["fault", "in flight", "operations", "failed (reported)", "values lost",
           "double writes", "leases leaked", "election s", "recover s"]
ROLE = "tradepulse-bench-faults"


def seconds(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value:.1f}"


def row(outcome: FaultOutcome) -> list[Any]:
    return [outcome.fault, outcome.in_flight, outcome.operations, outcome.failed,
            outcome.values_lost, outcome.double_writes, outcome.leases_leaked,
            seconds(outcome.election_seconds), seconds(outcome.recovery_seconds)]


def stack_repo(root: Path) -> Path:
    """A git checkout with the stack files and policies (kv-put checks ownership in it)."""
    repo = root / "repo"
    repo.mkdir()
    for stack_file in REPO.glob("Pulumi*.yaml"):
        shutil.copy2(stack_file, repo / stack_file.name)
    shutil.copytree(REPO / "policies", repo / "policies")
    git = ["git", "-C", str(repo), "-c", "user.name=Bench", "-c", "user.email=bench@invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stacks"], check=True)
    return repo


def cluster_faults(args: argparse.Namespace, tmp: Path, postgres: Any) -> list[FaultOutcome]:
    spec = load_stack_file(REPO / "Pulumi.local.yaml")
    cluster: RaftCluster = start_raft_cluster(
        tmp / "raft", extra_config=render_audit_hcl(spec.audit.devices),
        subdirs=(".local/openbao",))
    try:
        repo = stack_repo(tmp)
        outcomes = [concurrent_kv_puts(cluster, repo, writers=args.writers,
                                       rounds=args.rounds)]
        cluster.heal()
        configure_database(cluster.client(), postgres, {ROLE: (args.lease_seconds, 3600)})

        def logins(usernames: list[str]) -> int:
            names = ", ".join(f"'{name}'" for name in usernames)  # Vault-made: [a-zA-Z0-9-]
            return int(postgres.psql(
                f"select count(*) from pg_roles where rolname in ({names})"))  # noqa: S608

        outcomes.append(lease_holders(cluster, ROLE, leases=args.leases,
                                      lease_seconds=args.lease_seconds,
                                      run_seconds=args.run_seconds, pg_roles=logins))
        if args.pulumi:
            from tests.e2e.apply_faults import run_apply_faults

            cluster.heal()
            cluster.client().sys.disable_secrets_engine("database")
            outcomes += run_apply_faults(cluster, postgres, tmp / "apply")
        return outcomes
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--leases", type=int, default=8)
    parser.add_argument("--lease-seconds", type=int, default=20)
    parser.add_argument("--run-seconds", type=float, default=40.0)
    parser.add_argument("--pulumi", action="store_true",
                        help="also the apply faults (needs the toolchain: tools/toolchain/env.sh)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    outcomes: list[FaultOutcome] = []
    with temporary_dir("tp-bench-faults-") as tmp:
        postgres = start_postgres(tmp / "pg")
        try:
            outcomes += cluster_faults(args, Path(tempfile.mkdtemp(dir=tmp)), postgres)
        finally:
            postgres.stop()
    shown = [{k: v for k, v in o.details.items() if k != "preflight_output"} for o in outcomes]
    notes = [f"{o.fault}: {', '.join(f'{k}={v}' for k, v in details.items())}"
             + (f"; PROBLEMS: {'; '.join(o.notes)}" if o.notes else "")
             for o, details in zip(outcomes, shown, strict=True)]
    for outcome in outcomes:  # the report an operator reads after the kill
        if "preflight_output" in outcome.details:
            print(f"preflight after the kill ({outcome.fault}):\n"
                  f"{outcome.details['preflight_output']}", file=sys.stderr)
    emit("Faults on a three-node OpenBao raft cluster", HEADERS, [row(o) for o in outcomes],
         notes, args.json, {"outcomes": [o.__dict__ for o in outcomes]})
    return 1 if any(o.notes or o.values_lost or o.double_writes or o.leases_leaked
                    for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
