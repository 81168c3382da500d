"""Benchmark: keep N dynamic database leases alive in one process, and issue them fast.

Starts its own PostgreSQL and OpenBao dev server (``tests/servers.py``),
points the database engine at PostgreSQL, then for each N (default 100 and
1000):

1. issues N credentials through :class:`rotation.dynamic.manager.DynamicCredentialManager`
   and, interleaved in blocks of 50 on the same endpoint
   (``GET /v1/database/creds/<role>``), N through a raw keep-alive
   ``requests.Session`` loop - the ratio of the two is the manager's overhead;
2. keeps the N leases alive with one :class:`rotation.dynamic.group.ManagerGroup`
   (one dispatcher thread, a small worker pool) for a few lease lifetimes and
   counts late renewals (started inside the lease's grace window; target 0),
   the worst scheduling lag, and CPU seconds per renewal (the whole process,
   and the worker threads' own share);
3. stops the group, which revokes all N leases, and checks none is left.

Run from the repository root:  python bench/dynamic_leases.py
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# tests/servers.py (the real-server helpers) lives in the repository, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hvac
import requests
import requests.adapters

from rotation.dynamic.group import ManagerGroup
from rotation.dynamic.manager import Credential, DynamicCredentialManager
from tests.rotation.dynamic_support import configure_database, live_leases
from tests.servers import start_openbao, start_postgres, temporary_dir

BLOCK = 50  # issues per timed block; raw and managed blocks alternate


@dataclass
class Plan:
    size: int
    ttl: int  # seconds: the role's default_ttl
    keepalive: float  # seconds the group runs after the last issue


@dataclass
class Outcome:
    size: int
    ttl: int
    managed_rate: float
    raw_rate: float
    managed_cpu_per_issue: float
    raw_cpu_per_issue: float
    renewals: int
    late_renewals: int
    late_replacements: int
    max_lag: float
    unavailable: int
    process_cpu_per_renewal: float
    worker_cpu_per_renewal: float
    keepalive: float
    revoke_seconds: float
    left_over: int


def session_for(workers: int) -> requests.Session:
    """A session whose pool holds a keep-alive connection per worker thread."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=workers + 2)
    session.mount("http://", adapter)
    return session


@dataclass
class Issued:
    managers: list[DynamicCredentialManager]
    managed_seconds: float
    raw_seconds: float
    managed_cpu: float
    raw_cpu: float


def issue_all(server: Any, client: hvac.Client, role: str, size: int,
              group: ManagerGroup) -> Issued:
    """Issue ``size`` managed leases into ``group``, timing them against raw HTTP blocks."""
    raw = session_for(1)
    raw_headers = {"X-Vault-Token": server.root_token}
    raw_url = f"{server.address}/v1/database/creds/{role}"
    handed: dict[str, Credential] = {}
    out = Issued([], 0.0, 0.0, 0.0, 0.0)
    while len(out.managers) < size:
        n = min(BLOCK, size - len(out.managers))
        # raw block: the same endpoint, one keep-alive connection, nothing else
        raw_ids = []
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            response = raw.get(raw_url, headers=raw_headers, timeout=30)
            response.raise_for_status()
            raw_ids.append(response.json()["lease_id"])
        out.raw_seconds += time.perf_counter() - t0
        out.raw_cpu += time.process_time() - c0
        # managed block: issue + hand-over through the manager
        block = []
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            manager = DynamicCredentialManager(
                client, role=role, on_credential=lambda c: handed.__setitem__(c.lease_id, c))
            manager.issue()
            block.append(manager)
        out.managed_seconds += time.perf_counter() - t0
        out.managed_cpu += time.process_time() - c0
        for manager in block:
            group.add(manager)
        out.managers.extend(block)
        for lease_id in raw_ids:  # untimed: the raw leases are not part of the keep-alive
            raw.put(f"{server.address}/v1/sys/leases/revoke", headers=raw_headers,
                    json={"lease_id": lease_id}, timeout=30).raise_for_status()
    return out


def run_size(server: Any, plan: Plan, workers: int) -> Outcome:
    role = f"bench-{plan.size}"
    client = hvac.Client(url=server.address, token=server.root_token, timeout=30,
                         session=session_for(workers))
    client.secrets.database.create_role(
        name=role, db_name="tradepulse-postgres",
        creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                             "VALID UNTIL '{{expiration}}';"],
        revocation_statements=['DROP ROLE IF EXISTS "{{name}}";'],
        default_ttl=plan.ttl, max_ttl=24 * 60 * 60,  # 1d: no max_ttl replacements here
        mount_point="database")

    group = ManagerGroup(workers=workers)
    group_error: list[BaseException] = []

    def run_group() -> None:
        try:
            group.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            group_error.append(exc)

    dispatcher = threading.Thread(target=run_group, name="group")
    dispatcher.start()  # running from the start: early leases renew while later ones issue
    issued = issue_all(server, client, role, plan.size, group)
    managers = issued.managers

    renewals_before = sum(m.stats.renewals for m in managers)
    worker_cpu_before = sum(m.stats.cpu_seconds for m in managers)
    cpu0 = time.process_time()
    time.sleep(plan.keepalive)
    cpu = time.process_time() - cpu0
    renewals_window = sum(m.stats.renewals for m in managers) - renewals_before
    worker_cpu = sum(m.stats.cpu_seconds for m in managers) - worker_cpu_before

    t0 = time.perf_counter()
    group.stop()  # closes every manager: revoke_on_stop
    dispatcher.join()
    revoke_seconds = time.perf_counter() - t0
    if group_error:
        raise group_error[0]

    return Outcome(
        size=plan.size, ttl=plan.ttl,
        managed_rate=plan.size / issued.managed_seconds,
        raw_rate=plan.size / issued.raw_seconds,
        managed_cpu_per_issue=issued.managed_cpu / plan.size,
        raw_cpu_per_issue=issued.raw_cpu / plan.size,
        renewals=sum(m.stats.renewals for m in managers),
        late_renewals=sum(m.stats.late_renewals for m in managers),
        late_replacements=sum(m.stats.late_replacements for m in managers),
        max_lag=max(m.stats.max_lag_seconds for m in managers),
        unavailable=sum(m.stats.unavailable_errors for m in managers),
        process_cpu_per_renewal=cpu / max(renewals_window, 1),
        worker_cpu_per_renewal=worker_cpu / max(renewals_window, 1),
        keepalive=plan.keepalive, revoke_seconds=revoke_seconds,
        left_over=len(live_leases(client, role)),
    )


def report(o: Outcome, workers: int) -> str:
    ratio = o.raw_rate / o.managed_rate
    lines = [
        f"N={o.size}  (lease ttl {o.ttl}s, kept alive {o.keepalive:.0f}s after the last "
        f"issue, {workers} workers)",
        f"  issue throughput   managed {o.managed_rate:7.1f}/s   raw HTTP {o.raw_rate:7.1f}/s"
        f"   raw/managed = {ratio:.2f}x (target <= 1.5x) {'OK' if ratio <= 1.5 else 'MISSED'}",
        f"  client CPU/issue   managed {o.managed_cpu_per_issue * 1000:6.2f} ms   raw HTTP "
        f"{o.raw_cpu_per_issue * 1000:6.2f} ms   "
        f"ratio {o.managed_cpu_per_issue / o.raw_cpu_per_issue:.2f}x",
        f"  renewals           {o.renewals} total, late {o.late_renewals} (target 0) "
        f"{'OK' if o.late_renewals == 0 else 'MISSED'}, late replacements "
        f"{o.late_replacements}, max lag {o.max_lag * 1000:.1f} ms, Vault errors "
        f"{o.unavailable}",
        f"  CPU per renewal    process {o.process_cpu_per_renewal * 1000:.2f} ms   "
        f"worker threads {o.worker_cpu_per_renewal * 1000:.2f} ms",
        f"  stop               revoked all N in {o.revoke_seconds:.1f}s; leases left: "
        f"{o.left_over}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N (default 100,1000)")
    parser.add_argument("--workers", type=int, default=8, help="group worker threads")
    parser.add_argument("--ttl", type=int, default=0,
                        help="lease ttl in seconds (default: 10 for N<=100, else 30)")
    parser.add_argument("--lifetimes", type=float, default=2.5,
                        help="keep alive this many lease ttls after the last issue")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("rotation").setLevel(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    with temporary_dir("bench-pg-") as pg_dir, temporary_dir("bench-bao-") as bao_dir:
        postgres = start_postgres(pg_dir)
        server = None
        try:
            server = start_openbao(bao_dir)
            configure_database(server.client(), postgres, {}, any_role=True)
            print(f"OpenBao dev server {server.address}, PostgreSQL {postgres.port}; "
                  f"CPUs: {len(os.sched_getaffinity(0))}")
            outcomes = []
            for size in sizes:
                ttl = args.ttl or (10 if size <= 100 else 30)
                outcome = run_size(server, Plan(size, ttl, args.lifetimes * ttl), args.workers)
                outcomes.append(outcome)
                print(report(outcome, args.workers), flush=True)
        finally:
            if server is not None:
                server.stop()
            postgres.stop()
    ok = all(o.late_renewals == 0 and o.raw_rate / o.managed_rate <= 1.5 and o.left_over == 0
             for o in outcomes)
    print(f"total {time.perf_counter() - started:.0f}s; targets {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
