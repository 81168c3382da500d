"""Apply faults with the real engine on the raft cluster, shared by the e2e tests and the bench.

* :func:`leader_killed_during_up`: ``pulumi up`` of a rotation (the signing
  key bumped 1 -> 2) through a load balancer that follows the active node;
  the leader is SIGKILLed the moment the engine starts updating the secret.
  Observed: the live version after the broken apply (must be 1 or 2, never
  3), what ``verify`` says about it, whether the re-run converges without a
  check-and-set error, and the final version.
* :func:`pulumi_killed_mid_apply`: prod's backend shape - state in S3 (moto
  on loopback), secrets under an AWS KMS key - and ``pulumi up`` itself
  SIGKILLed (with everything it started: its session) while it updates the
  secret.
  The balancer holds Vault's answers once the write has gone through, and the
  kill comes when Vault has version 2: the killed apply's write landed and the
  engine never heard so (:class:`AnswerHoldingBalancer`). Observed: what
  ``preflight`` reports (stale lock, pending operations, ``next_steps``), the
  outcome of running exactly those steps, whether ``preview
  --expect-no-changes`` is then clean, and Vault's version history (no
  orphaned version: exactly versions 1 and 2, and when the killed write
  landed, version 2 is still that write: its ``created_time`` is unchanged).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kernel.spec import load_stack_file
from tests.cluster import ActiveNodeProxy, RaftCluster
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import git_init
from tests.reliability.leader_loss import FaultOutcome, LeaderKill
from tools.localenv import Workspace, init_workspace, render_only, set_stack_secrets

SIGNING = "secret/services/execution/session-signing-key"
SIGNING_PATH = "services/execution/session-signing-key"
PREFLIGHT_OUTPUT = "preflight_output"  # details key: preflight's text report after the kill
SIGNING_RESOURCE = "secret-secret-services-execution-session-signing-key"


class AnswerHoldingBalancer(ActiveNodeProxy):
    """The balancer, holding Vault's answers once the signing key's write has gone through.

    The write request is forwarded to Vault (which applies it) and from then on
    no answer reaches the client until :meth:`release`: the engine cannot hear
    that the write landed, so killing it then is the crash between Vault's write
    and Pulumi's checkpoint, every time (not a race with the checkpoint).
    """

    WRITE = f"PUT /v1/secret/data/{SIGNING_PATH} ".encode()

    def __init__(self, cluster: RaftCluster) -> None:
        self.armed = threading.Event()  # set for the apply to kill (not the first apply)
        self.write_sent = threading.Event()
        self._released = threading.Event()
        super().__init__(cluster)

    def _before_forward(self, chunk: bytes, to_server: bool) -> None:
        if to_server and self.armed.is_set() and self.WRITE in chunk:
            self.write_sent.set()  # before the request is forwarded: no answer can slip by
        elif not to_server and self.write_sent.is_set():
            self._released.wait()

    def release(self) -> None:
        """Let the held answers go (to clients that are gone by then)."""
        self._released.set()


def live_version(cluster: RaftCluster) -> int:
    meta = cluster.client().secrets.kv.v2.read_secret_metadata(path=SIGNING_PATH,
                                                               mount_point="secret")
    return int(meta["data"]["current_version"])


def version_history(cluster: RaftCluster) -> dict[int, str]:
    """The signing key's versions in Vault: each version's ``created_time``."""
    meta = cluster.client().secrets.kv.v2.read_secret_metadata(path=SIGNING_PATH,
                                                               mount_point="secret")
    return {int(k): str(v["created_time"]) for k, v in meta["data"]["versions"].items()}


def rotation(ws: Workspace, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], capture_output=True,
                          text=True, cwd=ws.root, env=ws.env(env), check=False, timeout=300)


def applied_workspace(cluster: RaftCluster, balancer: ActiveNodeProxy, postgres: Any,
                      tmp: Path, **backend: Any) -> Workspace:
    """The local stack applied once through the balancer, then the signing key bumped."""
    def edit(data: dict[str, Any]) -> None:
        data["vault"]["address"] = balancer.address
        render_only(data, str(tmp / "manifests"))  # no cluster in this test

    ws = init_workspace(tmp / "ws", "local", backend_dir=tmp / "state", passphrase="e2e",
                        vault_addr=balancer.address, vault_token=cluster.root_token,
                        spec_text=(REPO_ROOT / "Pulumi.local.yaml").read_text(), edit=edit,
                        **backend)
    set_stack_secrets(ws, load_stack_file(REPO_ROOT / "Pulumi.local.yaml"), postgres)
    git_init(ws.root)
    ws.pulumi("up", "--yes", "--skip-preview")
    bump = rotation(ws, "bump", "--stack", "local", SIGNING, "--repo", str(ws.root))
    if bump.returncode != 0:
        raise AssertionError(f"bump failed: {bump.stderr[-2000:]}")
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", "rotate signing key"],
                   check=True)
    return ws


def up_until(ws: Workspace, trigger: Callable[[str], bool], action: Callable[[], None],
             timeout: float = 600) -> tuple[int, str]:
    """Run ``pulumi up`` in its own process group; call ``action`` at the first line that
    ``trigger`` accepts; return the exit code and the whole output."""
    proc = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", ws.stack,
                             "--non-interactive"], cwd=ws.root, env=ws.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    fired = False
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if not fired and trigger(line):
            fired = True
            action()
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    return proc.wait(timeout=60), "".join(lines)


def updating_the_secret(line: str) -> bool:
    return SIGNING_RESOURCE in line and "updating" in line


def destroy(ws: Workspace) -> None:
    """Best effort: leave the shared cluster without this stack's configuration."""
    ws.pulumi("cancel", "--yes", check=False)
    ws.pulumi("destroy", "--yes", "--skip-preview", check=False, timeout=600)


def leader_killed_during_up(cluster: RaftCluster, postgres: Any, tmp: Path) -> FaultOutcome:
    """SIGKILL the active node as ``pulumi up`` starts writing the rotated secret."""
    with ActiveNodeProxy(cluster) as balancer:
        ws = applied_workspace(cluster, balancer, postgres, tmp)
        try:
            kill = LeaderKill(cluster)
            code, output = up_until(ws, updating_the_secret, kill.fire)
            if kill.at is None:
                raise AssertionError(f"the engine never updated the secret:\n{output[-3000:]}")
            kill.wait()
            after_kill = live_version(cluster)
            address = ["--stack", "local", "--repo", str(ws.root), "--address",
                       balancer.address, "--secret", SIGNING]
            told = json.loads(rotation(ws, "verify", "--json", *address).stdout)
            started = time.monotonic()
            rerun = ws.pulumi("up", "--yes", "--skip-preview", check=False)
            recovered = time.monotonic() - started
            final = live_version(cluster)
            again = json.loads(rotation(ws, "verify", "--json", *address).stdout)
        finally:
            destroy(ws)
    rerun_out = rerun.stdout + rerun.stderr
    told_live = next(v["live"] for v in told["versions"] if v["secret"] == SIGNING)
    final_live = next(v["live"] for v in again["versions"] if v["secret"] == SIGNING)
    notes = []
    if after_kill not in (1, 2):
        notes.append(f"live version {after_kill} after the broken apply (must be 1 or 2)")
    if told_live != after_kill:
        notes.append(f"verify said live {told_live}, Vault has {after_kill}")
    if rerun.returncode != 0:
        notes.append(f"re-run failed ({rerun.returncode}): {rerun_out[-1500:]}")
    if "check-and-set" in rerun_out:
        notes.append("re-run hit a check-and-set conflict")
    if final != 2 or final_live != 2:
        notes.append(f"final version {final} (verify: {final_live}), declared 2")
    return FaultOutcome(
        fault="leader SIGKILLed during `pulumi up` of a rotation",
        in_flight=1, operations=2, failed=int(code != 0), values_lost=int(final < 2),
        double_writes=int(final > 2 or after_kill > 2), leases_leaked=0,
        recovery_seconds=recovered, election_seconds=kill.election_seconds, notes=notes,
        details={"first_up_exit": code, "live_after_kill": after_kill,
                 "verify_after_kill_ok": told["ok"], "rerun_exit": rerun.returncode,
                 "final_version": final})


def pulumi_killed_mid_apply(cluster: RaftCluster, postgres: Any, tmp: Path,
                            moto_endpoint: tuple[str, int], aws: dict[str, str]
                            ) -> FaultOutcome:
    """SIGKILL ``pulumi up`` (its whole session) while it updates the rotated secret."""
    host, port = moto_endpoint
    backend_url = (f"s3://tradepulse-pulumi-state?endpoint={host}:{port}&disableSSL=true"
                   "&s3ForcePathStyle=true&region=eu-west-1")
    provider = "awskms://alias/tradepulse-vault-prod?region=eu-west-1"
    with AnswerHoldingBalancer(cluster) as balancer:
        ws = applied_workspace(cluster, balancer, postgres, tmp, backend_url=backend_url,
                               secrets_provider=provider, base_env=aws)
        killed: list[float] = []
        proc_group: list[int] = []

        def kill_pulumi() -> None:
            # Kill once the write is in Vault and its answer held: the engine never
            # checkpoints it (the case where a re-run could write twice).
            deadline = time.monotonic() + 60
            while not (balancer.write_sent.is_set() and live_version(cluster) >= 2) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            killed.append(time.monotonic())
            kill_session(proc_group[0])
            balancer.release()

        try:
            balancer.armed.set()
            _, output = _up_recording_group(ws, proc_group, kill_pulumi)
            if not killed:
                raise AssertionError(f"pulumi up was never killed:\n{output[-3000:]}")
            survivors = [p for p in session_members(proc_group[0]) if _alive(p)]
            after_kill = version_history(cluster)
            preflight = ["preflight", "--stack", "local", "--repo", str(ws.root), "--address",
                         balancer.address, "--backend", backend_url]
            pre = rotation(ws, *preflight, "--json", env=aws)
            report = json.loads(pre.stdout)
            pre_text = rotation(ws, *preflight, env=aws).stdout
            started = time.monotonic()
            steps = [s.split("   #")[0] for s in report.get("next_steps", [])]
            audit = cluster.active().workdir / ".local" / "openbao" / "audit.log"
            outcomes = [_run_step(ws, step, aws, audit) for step in steps]
            recovered = time.monotonic() - started
            preview = ws.pulumi("preview", "--expect-no-changes", check=False, extra_env=aws)
            final = version_history(cluster)
            clean = json.loads(rotation(ws, *preflight, "--json", env=aws).stdout)
        finally:
            balancer.release()  # never leave answers held (destroy goes through it)
            destroy(ws)
    notes = []
    if survivors:
        notes.append(f"processes of the killed apply still running: {survivors}")
    if pre.returncode != 1:
        notes.append(f"preflight exit {pre.returncode} after the kill (expected 1)")
    failures = " ".join(report.get("failures", []))
    if "stale Pulumi lock" not in failures:
        notes.append("preflight did not report the stale lock")
    if "pending operation" not in failures:
        notes.append("preflight did not report the pending operations")
    for step, (rc, out) in zip(steps, outcomes, strict=True):
        if rc != 0:
            notes.append(f"`{step}` failed ({rc}): {out[-1500:]}")
    if preview.returncode != 0:
        notes.append(f"preview --expect-no-changes failed ({preview.returncode}): "
                     f"{preview.stdout[-1500:]}")
    landed = max(after_kill) == 2
    if sorted(final) != [1, 2]:
        notes.append(f"versions {sorted(final)} in Vault, expected exactly [1, 2]")
    elif landed and final[2] != after_kill[2]:
        notes.append("version 2 was written again after the kill")
    if clean.get("lock", {}).get("locks") or clean.get("lock", {}).get("pending_operations"):
        notes.append(f"lock or pending operations left: {clean.get('lock')}")
    return FaultOutcome(
        fault="`pulumi up` SIGKILLed mid-apply (S3 backend on moto)",
        in_flight=1, operations=1 + len(steps), failed=1,  # the killed apply never finished
        values_lost=int(max(final, default=0) < 2),
        double_writes=int(max(final, default=0) > 2 or (landed and final.get(2) != after_kill[2])),
        leases_leaked=0, recovery_seconds=recovered, election_seconds=float("nan"), notes=notes,
        details={"live_after_kill": max(after_kill), "killed_write_landed": landed,
                 "next_steps": steps, "step_exits": [rc for rc, _ in outcomes],
                 "preflight_exit": pre.returncode, "preview_exit": preview.returncode,
                 "versions": sorted(final), "final_version": max(final, default=0),
                 PREFLIGHT_OUTPUT: pre_text})


def session_members(sid: int) -> list[int]:
    """The processes of session ``sid`` (Linux ``/proc``)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except (ProcessLookupError, PermissionError):
                continue
    return members


def kill_session(sid: int) -> None:
    """SIGKILL ``pulumi up`` and everything it started, as a crashed runner loses them.

    Its process group is not enough: Pulumi starts the language host and each
    provider plugin in a process group of its own (they outlived a ``killpg``
    here, orphaned), but in ``pulumi``'s session, which ``start_new_session``
    made ``sid``.
    """
    # Until none is left: a process the session starts while the first ones are killed
    # (pulumi launching a plugin at that instant) would otherwise outlive the kill.
    deadline = time.monotonic() + 10
    while (members := [p for p in session_members(sid) if _alive(p)]) and \
            time.monotonic() < deadline:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _up_recording_group(ws: Workspace, group: list[int],
                        action: Callable[[], None]) -> tuple[int, str]:
    proc = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", ws.stack,
                             "--non-interactive"], cwd=ws.root, env=ws.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    group.append(proc.pid)
    lines: list[str] = []
    assert proc.stdout is not None
    fired = threading.Event()
    for line in proc.stdout:
        lines.append(line)
        if not fired.is_set() and updating_the_secret(line):
            fired.set()
            action()
    return proc.wait(timeout=60), "".join(lines)


def _run_step(ws: Workspace, step: str, env: dict[str, str],
              audit_log: Path) -> tuple[int, str]:
    """Run one of preflight's next steps as printed (pulumi or the rotation CLI).

    Only what this machine needs is added: ``--non-interactive`` for pulumi,
    and for the rotation CLI the workspace and the active node's audit log.
    """
    argv = step.split()
    if argv[0] == "pulumi":
        proc = subprocess.run([*argv, "--non-interactive"], cwd=ws.root, env=ws.env(env),
                              capture_output=True, text=True, check=False, timeout=900)
    else:
        extra = ["--audit-log", str(audit_log)] if argv[3] == "verify" else []
        proc = rotation(ws, *argv[3:], "--repo", str(ws.root), *extra, env=env)
    return proc.returncode, proc.stdout + proc.stderr


def _alive(pid: int) -> bool:
    """Is ``pid`` running (not a zombie waiting for its parent)?"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def moto_prod_backend() -> Iterator[tuple[tuple[str, int], dict[str, str]]]:
    """A moto S3 + KMS server on loopback with prod's state bucket and KMS alias.

    Yields ``(host, port)`` and the AWS variables a child process needs.
    """
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        # moto keeps its backends per process, across servers: start from empty and
        # leave it empty (other tests on moto make the same bucket in the same process).
        requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": endpoint}
        clients = {"endpoint_url": endpoint, "region_name": "eu-west-1",
                   "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        boto3.client("s3", **clients).create_bucket(
            Bucket="tradepulse-pulumi-state",
            CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        kms = boto3.client("kms", **clients)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tradepulse-vault-prod", TargetKeyId=key)
        try:
            yield (host, port), aws
        finally:
            requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    finally:
        server.stop()


def run_apply_faults(cluster: RaftCluster, postgres: Any, tmp: Path) -> list[FaultOutcome]:
    """Both apply faults on ``cluster`` (healed in between), for bench/faults.py."""
    outcomes = [leader_killed_during_up(cluster, postgres, tmp / "leader")]
    cluster.heal()
    with moto_prod_backend() as (endpoint, aws):
        os.environ.update(aws)  # preflight's own lock check reads S3 in this process too
        outcomes.append(pulumi_killed_mid_apply(cluster, postgres, tmp / "killed", endpoint,
                                                aws))
    return outcomes
