"""The three-node raft cluster and pre-flight on it: what OpenBao's standbys really do.

Against the session's real cluster (tests/cluster.py): a standby forwards a
KV write to the active node and answers 200 itself (no redirect), but serves
reads from its own raft copy, which can lag behind the write just made - so
checks must read on the active node;
``preflight`` given a standby says which node is active and runs its checks
there; a sealed node and an uninitialised node are refused with exit 3 and a
message naming them; a standby whose active node has just been SIGKILLed
answers 307 to the dead node until a new leader is elected, and preflight
then refuses (exit 3) or follows the new leader - never reports a dead node
as active.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from rotation.cli import main
from tests.cluster import ActiveNodeProxy, RaftCluster, RaftNode, node_config
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi
from tests.servers import free_port

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"



@pytest.fixture
def local_stack(cluster: RaftCluster, stack_repo: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The local stack's secrets written on the cluster (mount ``secret``), removed after."""
    cluster.enable_kv2("secret", cas_required=True, max_versions=10)
    apply_like_pulumi(cluster.client(), stack_repo, "local")
    monkeypatch.setenv("VAULT_TOKEN", cluster.root_token)
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    try:
        yield stack_repo
    finally:
        cluster.client().sys.disable_secrets_engine("secret")


def preflight(capsys: pytest.CaptureFixture[str], repo: Path, address: str,
              ) -> tuple[int, dict[str, Any], str]:
    code = main(["preflight", "--json", "--stack", "local", "--repo", str(repo), "--address",
                 address, "--skip-lock-check"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_the_cluster_has_three_voters_one_active(cluster: RaftCluster) -> None:
    assert cluster.voters() == {"node1": True, "node2": True, "node3": True}
    states = [(n.health() or {}).get("standby") for n in cluster.nodes]
    assert states.count(False) == 1 and states.count(True) == 2
    leaders = {requests.get(f"{n.address}/v1/sys/leader", timeout=5).json()["leader_address"]
               for n in cluster.nodes}
    assert leaders == {cluster.active().address}


def test_a_standby_forwards_writes_but_serves_reads_from_its_own_copy(
    cluster: RaftCluster,
) -> None:
    """Writes sent to a standby are applied by the active node (200, not a redirect); reads
    a standby answers itself, from its raft copy, so right after a write it can be behind."""
    cluster.enable_kv2("fwd")
    try:
        standby = cluster.standbys()[0]
        headers = {"X-Vault-Token": cluster.root_token}
        write = requests.post(f"{standby.address}/v1/fwd/data/probe", headers=headers,
                              json={"data": {"k": "v1"}}, allow_redirects=False, timeout=10)
        assert write.status_code == 200, write.text  # forwarded, not redirected
        assert write.json()["data"]["version"] == 1
        assert write.headers.get("X-Vault-Index")  # the consistency token of the write
        on_active = cluster.client().secrets.kv.v2.read_secret_version(
            path="probe", mount_point="fwd", raise_on_deleted_version=True)["data"]
        assert on_active["data"] == {"k": "v1"}  # the active node has it at once
        statuses = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            read = requests.get(f"{standby.address}/v1/fwd/data/probe", headers=headers,
                                allow_redirects=False, timeout=10)
            statuses.append(read.status_code)
            if read.status_code == 200:
                assert read.json()["data"]["data"] == {"k": "v1"}
                break
        assert statuses[-1] == 200, statuses  # eventually consistent ...
        assert set(statuses) <= {200, 404}  # ... and answered locally (never a 307)
    finally:
        cluster.client().sys.disable_secrets_engine("fwd")


def test_preflight_on_a_standby_names_the_active_node_and_checks_there(
    cluster: RaftCluster, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    active, standby = cluster.active(), cluster.standbys()[0]
    code, out, err = preflight(capsys, local_stack, standby.address)
    assert code == 0, (out, err)
    vault = out["vault"]
    assert vault["asked"] == standby.address
    assert vault["active_node"] == active.address and vault["address"] == active.address
    assert vault["followed_standby"] is True and vault["standby"] is False
    assert {s["state"] for s in out["secrets"]} == {"in_sync"}
    code, out, _ = preflight(capsys, local_stack, active.address)
    assert code == 0
    assert out["vault"]["followed_standby"] is False and out["vault"]["ha_enabled"] is True
    assert out["vault"]["active_node"] == active.address
    main(["preflight", "--stack", "local", "--repo", str(local_stack), "--address",
          standby.address, "--skip-lock-check"])
    text = capsys.readouterr().out
    assert f"{standby.address} is a standby; the active node is {active.address}" in text


def test_preflight_refuses_a_sealed_node_with_exit_3(
    cluster: RaftCluster, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standby = cluster.standbys()[0]
    cluster.kill(standby)
    cluster.start_node(standby)  # restarted but not unsealed: sealed
    assert (standby.health() or {}).get("sealed") is True
    code, out, err = preflight(capsys, local_stack, standby.address)
    assert code == 3, (out, err)
    assert out["error"] == f"Vault at {standby.address} is sealed"
    assert "unseal" in out["hint"]


def test_preflight_refuses_an_uninitialised_node_with_exit_3(
    tmp_path: Path, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lone = RaftNode("lone", free_port(), free_port(), tmp_path / "lone")
    (lone.workdir / "raft").mkdir(parents=True)
    lone.config_path.write_text(node_config(lone, [], ""))
    spare = RaftCluster(tmp_path, [lone])
    spare.start_node(lone)
    try:
        code, out, err = preflight(capsys, local_stack, lone.address)
        assert code == 3, (out, err)
        assert out["error"].startswith(f"Vault at {lone.address} is not initialized")
    finally:
        spare.stop()


def test_preflight_during_an_election_refuses_or_follows_the_new_leader(
    cluster: RaftCluster, local_stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = cluster.active()
    standby = cluster.standbys()[0]
    cluster.kill(old)
    killed = time.monotonic()
    # What OpenBao does before a new leader is elected: 307 to the dead node's api_addr.
    answer = requests.get(f"{standby.address}/v1/secret/data/services/x",
                          headers={"X-Vault-Token": cluster.root_token},
                          allow_redirects=False, timeout=10)
    observed = [answer.status_code]
    outcomes: list[tuple[int, str]] = []
    while time.monotonic() - killed < 60:
        code, out, _ = preflight(capsys, local_stack, standby.address)
        active = out.get("vault", {}).get("active_node") if code == 0 else None
        outcomes.append((code, active or out.get("error", "")))
        assert active != old.address, "preflight reported the killed node as active"
        assert code in (0, 3), out
        if code == 3:
            assert standby.address in out["error"] or old.address in out["error"], out
        if code == 0:
            break
        time.sleep(0.2)
    new = cluster.active()
    assert new is not old
    assert outcomes[-1] == (0, new.address), outcomes
    # The standby either still forwarded (election already done) or redirected to the dead node.
    if observed[0] == 307:
        assert answer.headers["Location"].startswith(old.address)
    else:
        assert observed[0] in (200, 404), observed


def test_the_load_balancer_follows_the_active_node_across_a_failover(
    cluster: RaftCluster,
) -> None:
    old = cluster.active()
    with ActiveNodeProxy(cluster) as balancer:
        def leader_via_balancer() -> str:
            answer = requests.get(f"{balancer.address}/v1/sys/leader", timeout=5).json()
            assert answer["is_self"] is True  # the balancer only ever talks to the leader
            return str(answer["leader_address"])
        assert leader_via_balancer() == old.address
        cluster.kill(old)
        new, _ = cluster.wait_new_leader(old)
        cluster.wait(lambda: leader_via_balancer() == new.address, 30, "balancer on new leader")
    assert new is not old
