"""``make up-cluster`` / ``make down-cluster``: a three-node OpenBao raft cluster to try failover.

The same cluster the fault tests use (``tests/cluster.py``), started detached
under ``.local/cluster/`` with the local stack's audit devices, so you can
point the rotation commands at it and kill its leader yourself:

    make up-cluster                      # prints the nodes, the active one, VAULT_ADDR
    source .local/cluster/env            # VAULT_ADDR (a standby) and VAULT_TOKEN
    .venv/bin/python -m rotation preflight --stack local --address $VAULT_ADDR --skip-lock-check
    .venv/bin/python tools/raftcluster.py status
    .venv/bin/python tools/raftcluster.py kill-leader   # SIGKILL the active node
    .venv/bin/python tools/raftcluster.py heal          # restart and unseal it
    make down-cluster

The unseal key and root token are in ``.local/cluster/init.json`` (mode
0600); ``env`` holds the root token for this throwaway cluster only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER_DIR = REPO_ROOT / ".local" / "cluster"
STATE = CLUSTER_DIR / "cluster.json"


def _load() -> object:
    """Rebuild the :class:`~tests.cluster.RaftCluster` of a running ``make up-cluster``."""
    from tests.cluster import RaftCluster, RaftNode

    state = json.loads(STATE.read_text())
    init = json.loads((CLUSTER_DIR / "init.json").read_text())
    nodes = [RaftNode(n["node_id"], n["api_port"], n["cluster_port"], Path(n["workdir"]))
             for n in state["nodes"]]
    cluster = RaftCluster(CLUSTER_DIR, nodes, state.get("extra_config", ""), detach=True,
                          root_token=init["root_token"], unseal_key=init["unseal_keys_b64"][0])
    for node, saved in zip(nodes, state["nodes"], strict=True):
        node.pid = saved.get("pid")  # started by an earlier invocation: known by pid only
    return cluster


def _save(cluster: object) -> None:
    from tests.cluster import RaftCluster

    assert isinstance(cluster, RaftCluster)
    nodes = [{"node_id": n.node_id, "api_port": n.api_port, "cluster_port": n.cluster_port,
              "workdir": str(n.workdir), "pid": n.pid} for n in cluster.nodes]
    STATE.write_text(json.dumps({"nodes": nodes, "extra_config": cluster.extra_config}))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def up() -> int:
    """Start the cluster detached and print how to use it."""
    sys.path.insert(0, str(REPO_ROOT))
    from infra.audit_config import render_audit_hcl
    from kernel.spec import load_stack_file
    from tests.cluster import start_raft_cluster

    if STATE.exists():
        print("a cluster is already running: `make down-cluster` first", file=sys.stderr)
        return 1
    if CLUSTER_DIR.exists():
        shutil.rmtree(CLUSTER_DIR)
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    started = time.monotonic()
    cluster = start_raft_cluster(CLUSTER_DIR, extra_config=render_audit_hcl(spec.audit.devices),
                                 detach=True, subdirs=(".local/openbao",))
    _save(cluster)
    standby = cluster.standbys()[0]
    env = CLUSTER_DIR / "env"
    fd = os.open(env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"export VAULT_ADDR={standby.address}\n"
                     f"export VAULT_TOKEN={cluster.root_token}\n")
    print(f"raft cluster up in {time.monotonic() - started:.0f}s (keys: {CLUSTER_DIR}/init.json)")
    return status(cluster)


def status(cluster: object | None = None) -> int:
    """Print each node: address, pid, state."""
    from tests.cluster import RaftCluster

    found = cluster if cluster is not None else _load()
    assert isinstance(found, RaftCluster)
    for node in found.nodes:
        health = node.health() if _alive(node.pid) else None
        state = ("down" if health is None else "sealed" if health.get("sealed")
                 else "standby" if health.get("standby") else "ACTIVE")
        print(f"  {node.node_id}  {node.address}  pid {node.pid}  {state}")
    print(f"\nsource {CLUSTER_DIR.relative_to(REPO_ROOT)}/env   # VAULT_ADDR (a standby), "
          "VAULT_TOKEN\n.venv/bin/python -m rotation preflight --stack local --address "
          "$VAULT_ADDR --skip-lock-check   # names the active node\n"
          ".venv/bin/python tools/raftcluster.py kill-leader | heal | status\nmake down-cluster")
    return 0


def kill_leader() -> int:
    """SIGKILL the active node and time the election."""
    from tests.cluster import RaftCluster

    cluster = _load()
    assert isinstance(cluster, RaftCluster)
    victim = cluster.active_or_none()
    if victim is None or victim.pid is None:
        print("no active node to kill", file=sys.stderr)
        return 1
    cluster.kill(victim)
    _save(cluster)
    started = time.monotonic()
    while time.monotonic() - started < 60:
        new = cluster.active_or_none()
        if new is not None and new is not victim:
            print(f"killed {victim.node_id}; {new.node_id} ({new.address}) active after "
                  f"{time.monotonic() - started:.1f}s")
            return 0
        time.sleep(0.1)
    print(f"killed {victim.node_id}; no new leader within 60s", file=sys.stderr)
    return 1


def heal() -> int:
    """Restart dead nodes and unseal them."""
    from tests.cluster import RaftCluster

    cluster = _load()
    assert isinstance(cluster, RaftCluster)
    for node in cluster.nodes:
        if not _alive(node.pid):
            cluster.start_node(node)
            cluster.unseal(node)
    _save(cluster)
    return status(cluster)


def down() -> int:
    """Stop every node and remove ``.local/cluster``."""
    if STATE.exists():
        pids = [n["pid"] for n in json.loads(STATE.read_text())["nodes"] if _alive(n.get("pid"))]
        for pid in pids:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(CLUSTER_DIR, ignore_errors=True)
    print("raft cluster stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python tools/raftcluster.py up|status|kill-leader|heal|down``."""
    sys.path.insert(0, str(REPO_ROOT))
    parser = argparse.ArgumentParser(prog="tools/raftcluster.py", description=__doc__)
    parser.add_argument("action", choices=["up", "status", "kill-leader", "heal", "down"])
    args = parser.parse_args(argv)
    if args.action not in {"up", "down"} and not STATE.exists():
        print("no cluster running: `make up-cluster` first", file=sys.stderr)
        return 1
    actions = {"up": up, "status": status, "kill-leader": kill_leader, "heal": heal,
               "down": down}
    return actions[args.action]()


if __name__ == "__main__":
    raise SystemExit(main())
