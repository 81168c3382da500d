"""Leader-loss scenarios on the raft cluster, shared by the tests and ``bench/faults.py``.

Each scenario runs real work against the cluster, SIGKILLs the active node
in the middle of it, lets the work finish, and returns a :class:`FaultOutcome`
with what it observed - never what it expected: the operations in flight at
the kill, values lost, double writes, leases leaked and the time from the
kill until the work succeeded again. The tests assert the invariants on the
outcome; the benchmark prints the same outcomes as the table in
docs/faults.md.

* :func:`concurrent_kv_puts`: writers run ``python -m rotation kv-put`` (the
  real CLI, one process per write) against one KV v2 secret, each setting
  its own key round after round, while an in-process writer
  (:func:`rotation.kvwrite.cas_put`) sets its own key as fast as it can, so
  the check-and-set writes conflict and merge-retry; the leader dies when a
  third of the processes' writes are in.
* :func:`lease_holders`: a :class:`~rotation.dynamic.group.ManagerGroup` keeps N
  database leases alive through a standby; the leader dies between renewals.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions

from rotation import kvwrite
from rotation.cluster import follow_active
from rotation.dynamic.group import ManagerGroup
from rotation.dynamic.manager import Credential, DynamicCredentialManager
from rotation.dynamic.policy import LeasePolicy
from rotation.errors import RotationError
from tests.cluster import RaftCluster
from tests.reliability.support import child_env, run_cli
from tests.rotation.dynamic_support import live_leases


@dataclass
class FaultOutcome:
    """What one fault run observed (the columns of docs/faults.md)."""

    fault: str
    in_flight: int  # operations started before the kill and finished after it
    operations: int  # operations in the run
    failed: int  # operations that reported failure
    values_lost: int
    double_writes: int
    leases_leaked: int
    recovery_seconds: float  # kill -> first success of an operation begun after it
    election_seconds: float  # kill -> a new node reports active
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


# -- concurrent kv-put merge-retries ---------------------------------------------------------


@dataclass(frozen=True)
class PutRun:
    """One kv-put process: who, which value, when, and what it reported."""

    writer: int
    round: int
    value: str
    started: float
    finished: float
    exit_code: int
    report: dict[str, Any]


def _versions(client: hvac.Client, mount: str, path: str) -> dict[int, dict[str, Any]]:
    meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)["data"]
    out: dict[int, dict[str, Any]] = {}
    for version in range(1, int(meta["current_version"]) + 1):
        answer = client.secrets.kv.v2.read_secret_version(
            path=path, version=version, mount_point=mount, raise_on_deleted_version=False)
        out[version] = dict(answer["data"]["data"] or {})
    return out


def concurrent_kv_puts(cluster: RaftCluster, repo: Path, *, writers: int = 4,
                       rounds: int = 5, mount: str = "race", path: str = "shared",
                       kill_after: int | None = None) -> FaultOutcome:
    """Writers kv-put their own key ``rounds`` times each; the leader dies mid-run.

    Every writer addresses a standby (half one, half the other), which the
    CLI follows to the active node; ``--unavailable-timeout`` lets it ride
    out the election. The history of the secret is then read version by
    version: each version must add exactly one writer's change to the one
    before (merged keys kept), and match what the writes reported.
    """
    cluster.enable_kv2(mount, cas_required=True, max_versions=100_000)  # keep the history
    standbys = cluster.standbys()
    kill = LeaderKill(cluster)
    total = writers * rounds
    kill_after = total // 3 if kill_after is None else kill_after
    runs: list[PutRun] = []
    lock = threading.Lock()

    def writer(index: int) -> None:
        address = standbys[index % len(standbys)].address
        for number in range(1, rounds + 1):
            value = f"w{index}-r{number}"
            env = child_env(VAULT_TOKEN=cluster.root_token, NEW_VALUE=value)
            started = time.monotonic()
            proc = run_cli(["kv-put", "--json", "--address", address, "--mount", mount,
                            "--path", path, "--set", f"w{index}=NEW_VALUE", "--retries", "50",
                            "--unavailable-timeout", "60", "--repo", str(repo)],
                           cwd=repo, env=env, timeout=120)
            try:
                report = json.loads(proc.stdout)
            except json.JSONDecodeError:
                report = {"ok": False, "error": f"no JSON (exit {proc.returncode}): "
                                                f"{proc.stderr[-300:]}"}
            with lock:
                runs.append(PutRun(index, number, value, started, time.monotonic(),
                                   proc.returncode, report))
                if sum(r.writer < writers for r in runs) >= kill_after:
                    kill.fire()

    processes_done = threading.Event()

    def competitor() -> None:
        # An in-process writer of its own key, as fast as it can: the kv-put processes'
        # read-to-write windows are milliseconds, so without it conflicts would be luck.
        index, number = writers, 0
        standby = standbys[-1]

        def active() -> hvac.Client:
            return follow_active(hvac.Client(url=standby.address, token=cluster.root_token,
                                             timeout=5), standby.address)[1]

        client = kvwrite.retry_unavailable(active, 60)
        while not processes_done.is_set():
            number += 1
            value = f"w{index}-r{number}"
            started = time.monotonic()
            try:
                result = kvwrite.cas_put(client, mount, path, {f"w{index}": value},
                                         retries=50, unavailable_timeout=60, reconnect=active)
                report = {"ok": True, "written": result.written,
                          "new_version": result.new_version,
                          "merged_over": list(result.merged_over),
                          "unanswered_writes": result.unanswered_writes}
                code = 0
            except RotationError as exc:
                report, code = {"ok": False, "error": str(exc)}, exc.exit_code
            with lock:
                runs.append(PutRun(index, number, value, started, time.monotonic(), code,
                                   report))
            time.sleep(0.1)

    with ThreadPoolExecutor(writers + 1) as pool:
        rival = pool.submit(competitor)
        futures = [pool.submit(writer, i) for i in range(writers)]
        for future in futures:
            future.result()
        processes_done.set()
        rival.result()
    if kill.at is None:
        raise AssertionError("the leader was never killed: too few writes finished")
    kill.wait()
    history = _versions(cluster.client(), mount, path)
    return _judge_puts(runs, history, kill.at, kill.election_seconds, writers + 1)


class LeaderKill:
    """SIGKILL the active node and time, in a thread, until another node is active."""

    def __init__(self, cluster: RaftCluster) -> None:
        self.cluster = cluster
        self.victim = cluster.active()
        self.at: float | None = None  # monotonic time of the kill
        self.at_wall: float | None = None
        self.election_seconds = float("nan")
        self._thread: threading.Thread | None = None

    def fire(self) -> None:
        """Kill the leader now (once) and start timing the election."""
        if self.at is not None:
            return
        self.at, self.at_wall = time.monotonic(), time.time()
        self.cluster.kill(self.victim)
        self._thread = threading.Thread(target=self._time_election, daemon=True)
        self._thread.start()

    def _time_election(self) -> None:
        new, _ = self.cluster.wait_new_leader(self.victim)
        # The new leader's own clock says when it became active (sys/leader active_time):
        # exact, where polling health from a loaded test process only bounds it.
        active_time = str(new.client().sys.read_leader_status().get("active_time", ""))
        try:
            took_over = datetime.fromisoformat(active_time.replace("Z", "+00:00"))
        except ValueError:
            took_over = None
        if took_over is not None and self.at_wall is not None:
            self.election_seconds = took_over.timestamp() - self.at_wall
        elif self.at is not None:
            self.election_seconds = time.monotonic() - self.at

    def wait(self) -> None:
        """Wait until the election was timed."""
        if self._thread is not None:
            self._thread.join(timeout=120)


def _walk_history(history: dict[int, dict[str, Any]],
                  notes: list[str]) -> tuple[int, int, dict[str, int]]:
    """Each version must change exactly one key, to a value no earlier version had.

    Returns (keys lost, values written twice, {value: version that wrote it}).
    """
    lost = double = 0
    written_values: dict[str, int] = {}
    previous: dict[str, Any] = {}
    for version in sorted(history):
        data = history[version]
        changed = {k for k in set(data) | set(previous) if data.get(k) != previous.get(k)}
        dropped = {k for k in previous if k not in data}
        if dropped:
            lost += len(dropped)
            notes.append(f"version {version} dropped key(s) {sorted(dropped)}")
        if len(changed) != 1:
            notes.append(f"version {version} changed {sorted(changed)} (expected one key)")
        for key in changed - dropped:
            value = str(data[key])
            if value in written_values:
                double += 1
                notes.append(f"{value} written twice (versions {written_values[value]}, "
                             f"{version})")
            written_values[value] = version
        previous = data
    return lost, double, written_values


def _judge_puts(runs: list[PutRun], history: dict[int, dict[str, Any]], killed: float,
                election: float, writers: int) -> FaultOutcome:
    ok = [r for r in runs if r.exit_code == 0 and r.report.get("written") is True]
    failed = [r for r in runs if r.exit_code != 0]
    notes: list[str] = []
    claimed: dict[int, PutRun] = {}
    double = 0
    for run in ok:
        version = int(run.report["new_version"])
        if version in claimed:
            double += 1
            notes.append(f"version {version} claimed by {claimed[version].value} and {run.value}")
        claimed[version] = run
    lost, twice, written_values = _walk_history(history, notes)
    double += twice
    for run in ok:
        version = int(run.report["new_version"])
        if history.get(version, {}).get(f"w{run.writer}") != run.value:
            lost += 1
            notes.append(f"{run.value} reported version {version}, which does not hold it")
    for run in failed:
        if run.value in written_values:
            notes.append(f"{run.value} reported failure but is version "
                         f"{written_values[run.value]}")
            double += 1
    unclaimed = sorted(set(history) - set(claimed))
    if unclaimed:
        notes.append(f"versions no successful write reported: {unclaimed}")
    final = history[max(history)] if history else {}
    for index in range(writers):
        mine = sorted((r for r in ok if r.writer == index), key=lambda r: r.round)
        if mine and final.get(f"w{index}") != mine[-1].value:
            lost += 1
            notes.append(f"writer {index}'s last committed value {mine[-1].value} is not live")
    in_flight = [r for r in runs if r.started < killed < r.finished]
    after = [r.finished for r in ok if r.started > killed]  # writes begun after the kill
    recovery = (min(after) - killed) if after else float("inf")
    return FaultOutcome(
        fault="leader SIGKILLed during concurrent kv-put merge-retries",
        in_flight=len(in_flight), operations=len(runs), failed=len(failed),
        values_lost=lost, double_writes=double, leases_leaked=0,
        recovery_seconds=recovery, election_seconds=election, notes=notes,
        details={
            "versions": len(history), "committed": len(ok),
            "unclaimed_versions": unclaimed,
            "merge_retries": sum(len(r.report.get("merged_over", [])) for r in ok),
            "unanswered_writes": sum(int(r.report.get("unanswered_writes", 0)) for r in ok),
            "failures": [r.report.get("error") for r in failed],
        })


# -- dynamic credential leases ------------------------------------------------------------


@dataclass
class _LeaseLog:
    """Every credential handed over and every renewal, as the managers reported them."""

    issued: list[Credential] = field(default_factory=list)
    # (sent at, lease id, expiry it extended, answered at), epoch seconds
    renewals: list[tuple[float, str, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def lease_holders(cluster: RaftCluster, role: str, *, leases: int = 8,
                  lease_seconds: int = 20, run_seconds: float = 45.0,
                  pg_roles: Any = None) -> FaultOutcome:
    """N managers keep ``role``'s leases alive through a standby; the leader dies mid-run.

    The kill comes a moment before the first renewal is due, so the renewals
    meet the election. ``lease_seconds`` is the role's TTL (the caller made it).

    Invariants measured: every renewal happened before the lease it renewed
    expired and outside its grace window (late: a renewal started inside it),
    no credential was replaced because its lease lapsed, and at stop every
    lease ever issued is revoked (none left under ``sys/leases/lookup``) and,
    with ``pg_roles`` (a callable counting which of the given PostgreSQL user
    names exist), no database login it was handed is left behind.
    """
    standby = cluster.standbys()[0]
    kill = LeaderKill(cluster)
    record = _LeaseLog()
    expiry: dict[str, float] = {}
    group = ManagerGroup(workers=leases)  # a hung request must not delay the others
    managers: list[DynamicCredentialManager] = []

    def handed(cred: Credential) -> None:
        with record.lock:
            record.issued.append(cred)
            expiry[cred.lease_id] = cred.expires_at

    def renewed(cred: Credential) -> None:
        with record.lock:
            was_due = expiry.get(cred.lease_id, 0.0)
            record.renewals.append((cred.renewed_at or time.time(), cred.lease_id, was_due,
                                    time.time()))
            expiry[cred.lease_id] = cred.expires_at

    client = hvac.Client(url=standby.address, token=cluster.root_token, timeout=5)
    # The standby answers reads from its own copy: wait until it has the role just made.
    cluster.wait(lambda: bool(client.secrets.database.read_role(role)), 30,
                  f"role {role} replicated to {standby.node_id}")
    for _ in range(leases):
        manager = DynamicCredentialManager(
            client, role=role, on_credential=handed, on_renewal=renewed,
            policy=LeasePolicy(backoff_initial=0.25, backoff_max=2.0, escalate_after=120))
        manager.issue()
        group.add(manager)
        managers.append(manager)
    if pg_roles is not None:
        held = int(pg_roles([c.username for c in record.issued]))
        if held != leases:  # the check at the end would prove nothing
            raise AssertionError(f"{held} database logins for {leases} leases: pg_roles is wrong")
    first_due = min(m.next_action_at for m in managers)
    timer = threading.Timer(max(0.0, first_due - time.monotonic() - 0.3), kill.fire)
    timer.start()
    reports = group.run(duration=run_seconds)
    timer.join()
    kill.wait()
    root = cluster.client()
    assert kill.at_wall is not None
    kill_wall = kill.at_wall
    late = [r for r in (m.stats for m in group.managers) if r.late_renewals]
    lapsed = [(at, lease, due) for at, lease, due, _ in record.renewals if at >= due]
    after = [answered for _, _, _, answered in record.renewals if answered > kill_wall]
    issued_ids = {c.lease_id for c in record.issued}
    still_live = live_leases(root, role)  # whole lease ids, as issued_ids are
    leaked = len(issued_ids & set(still_live))
    not_revoked = [lease for rep in reports for lease in rep.not_revoked]
    logins = int(pg_roles([c.username for c in record.issued])) if pg_roles is not None else 0
    notes = [f"renewal of {lease} after its lease ended" for _, lease, _ in lapsed]
    notes += [f"{len(not_revoked)} lease(s) not revoked at stop"] if not_revoked else []
    notes += [f"{logins} database login(s) left"] if logins else []
    replaced_late = sum(m.stats.late_replacements for m in group.managers)
    in_flight = sum(1 for m in group.managers if m.stats.unavailable_errors)  # met the outage
    return FaultOutcome(
        fault=f"leader SIGKILLed while the credential manager holds {leases} leases",
        in_flight=in_flight, operations=len(record.renewals) + len(record.issued),
        failed=sum(m.stats.unavailable_errors for m in group.managers),
        values_lost=len(lapsed) + replaced_late, double_writes=0,
        leases_leaked=leaked + len(not_revoked) + logins,
        recovery_seconds=(min(after) - kill_wall) if after else float("inf"),
        election_seconds=kill.election_seconds,
        notes=notes,
        details={"issued": len(issued_ids), "renewals": len(record.renewals),
                 "late_renewals": sum(s.late_renewals for s in
                                      (m.stats for m in group.managers)),
                 "managers_with_late_renewals": len(late),
                 "late_replacements": replaced_late,
                 "replacements": sum(m.stats.replacements for m in group.managers),
                 "unavailable_errors": sum(m.stats.unavailable_errors for m in group.managers),
                 "revoked_at_stop": sum(len(r.revoked) for r in reports),
                 "live_after_stop": still_live, "database_logins_left": logins})
