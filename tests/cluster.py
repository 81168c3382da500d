"""A three-node OpenBao raft cluster on loopback: integrated storage, initialised and unsealed.

Production Vault is a high-availability cluster; this is its shape for the
tests, the fault benchmark (``bench/faults.py``) and ``make up-cluster``.
Each node is a real ``bao server`` (not ``-dev``) with ``storage "raft"``,
its own API and cluster port, and ``retry_join`` stanzas naming every node,
so any node can be killed and started again and finds the others. The first
node is initialised with one key share; the unseal key and root token are
written to ``init.json`` (mode 0600) in the cluster's directory - the test's
temporary directory - and every node is unsealed with it.

Timers: ``performance_multiplier = 1`` (raft's production-tuned timers: a
1 s heartbeat/election timeout instead of 5 s) and autopilot's server
stabilisation time lowered to 1 s, so followers become voters and a lost
leader is replaced within seconds (docs/faults.md has the measured times).

OpenBao's behaviours the fault tests rely on (observed on 2.7.2, asserted in
``tests/integration/test_raft_cluster.py``):

* a standby *forwards* writes to the active node: a KV write sent to a
  standby answers 200 with the new version (no redirect); reads it answers
  from its own copy, which can lag the active node for about 0.1 s
  (docs/faults.md); ``sys/health`` and ``sys/leader`` are answered by the
  node itself;
* after SIGKILL of the active node a standby takes over; until it does,
  requests to the survivors fail (5xx), they are not queued;
* right after a kv-v2 mount is enabled, writes answer "Waiting for the
  primary to upgrade from non-versioned to versioned data" - on each
  standby for a while after the active node is done: :meth:`wait_kv2`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

from tests.rotation.tcp_proxy import TcpProxy
from tests.servers import bao_binary, free_port

NODES = 3
ELECTION_TIMEOUT_SECONDS = 60  # generous: a loaded 2-core machine slows elections down


def node_config(node: RaftNode, peers: list[int], extra_config: str) -> str:
    node_id, api_port, cluster_port = node.node_id, node.api_port, node.cluster_port
    data_dir = node.workdir / "raft"
    joins = "\n".join(
        f'  retry_join {{\n    leader_api_addr = "http://127.0.0.1:{port}"\n  }}'
        for port in peers)
    return f"""\
storage "raft" {{
  path = "{data_dir}"
  node_id = "{node_id}"
  performance_multiplier = 1
{joins}
}}

listener "tcp" {{
  address = "127.0.0.1:{api_port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}

api_addr = "http://127.0.0.1:{api_port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
disable_mlock = true
{extra_config}
"""


@dataclass
class RaftNode:
    """One ``bao server`` of the cluster: its ports, directory and (while running) process."""

    node_id: str
    api_port: int
    cluster_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # also set for a node another process started (make up-cluster)

    @property
    def address(self) -> str:
        """The node's API address (its ``api_addr``)."""
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def config_path(self) -> Path:
        """The node's server config file."""
        return self.workdir / "server.hcl"

    @property
    def log_path(self) -> Path:
        """The node's server log."""
        return self.workdir / "bao.log"

    @property
    def running(self) -> bool:
        """Whether the node's process is alive."""
        if self.process is not None:
            return self.process.poll() is None
        if self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def client(self, token: str | None = None, timeout: float = 10) -> hvac.Client:
        """An hvac client for this node (unauthenticated unless ``token``)."""
        return hvac.Client(url=self.address, token=token, timeout=timeout)

    def health(self) -> dict[str, Any] | None:
        """``sys/health`` of this node (every status answered with 200), ``None`` if down."""
        try:
            answer = requests.get(
                f"{self.address}/v1/sys/health",
                params={"standbyok": "true", "sealedcode": 200, "uninitcode": 200,
                        "standbycode": 200, "perfstandbyok": "true"}, timeout=2)
            return dict(answer.json())
        except (requests.RequestException, ValueError):
            return None


@dataclass
class RaftCluster:
    """Three raft nodes on loopback, the unseal key and root token in ``init.json``."""

    root: Path
    nodes: list[RaftNode]
    extra_config: str = ""
    detach: bool = False
    root_token: str = field(default="", repr=False)
    unseal_key: str = field(default="", repr=False)

    # -- lifecycle -----------------------------------------------------------------------

    def start_node(self, node: RaftNode) -> None:
        """Start ``node``'s server process (it is sealed until :meth:`unseal`)."""
        log = node.log_path.open("ab")
        node.process = subprocess.Popen(
            [bao_binary(), "server", f"-config={node.config_path}", "-log-level=warn"],
            cwd=node.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            start_new_session=self.detach,
        )
        node.pid = node.process.pid
        log.close()
        self.wait(lambda: node.health() is not None, 30, f"{node.node_id} listening")

    def unseal(self, node: RaftNode) -> None:
        """Unseal ``node`` with the cluster's key (it then joins through ``retry_join``)."""
        # A node still joining answers 5xx for a moment: retried until the deadline.
        def unsealed() -> bool:
            status = node.health() or {}
            if status.get("sealed") is False:
                return True
            node.client().sys.submit_unseal_key(self.unseal_key)
            return (node.health() or {}).get("sealed") is False
        self.wait(unsealed, 60, f"{node.node_id} unsealed")

    def kill(self, node: RaftNode) -> None:
        """SIGKILL ``node``: no shutdown, no leadership hand-off (a crashed host)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=10)
        elif node.process is None and node.running and node.pid is not None:
            os.kill(node.pid, signal.SIGKILL)
        node.pid = None

    def restart(self, node: RaftNode) -> None:
        """Start a stopped node again and unseal it; it rejoins as a follower."""
        self.start_node(node)
        self.unseal(node)

    def heal(self) -> None:
        """Bring every node back: start the dead ones, unseal the sealed, wait for voters."""
        for node in self.nodes:
            if not node.running:
                self.start_node(node)
            if (node.health() or {}).get("sealed"):
                self.unseal(node)
        self.wait_voters(len(self.nodes))
        for node in self.nodes:
            self.wait_serving(node)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()

    # -- who is who ----------------------------------------------------------------------

    def client(self, node: RaftNode | None = None, timeout: float = 10) -> hvac.Client:
        """A root-token client for ``node`` (default: the active node)."""
        return (node or self.active()).client(self.root_token, timeout)

    def env(self, node: RaftNode | None = None) -> dict[str, str]:
        """``VAULT_ADDR``/``VAULT_TOKEN``/``BAO_*`` for a child process talking to ``node``."""
        address = (node or self.active()).address
        return {"VAULT_ADDR": address, "VAULT_TOKEN": self.root_token,
                "BAO_ADDR": address, "BAO_TOKEN": self.root_token}

    def active_or_none(self) -> RaftNode | None:
        """The node whose ``sys/health`` says unsealed and not standby, if any."""
        for node in self.nodes:
            if not node.running:
                continue
            status = node.health()
            if status and status.get("initialized") and not status.get("sealed") \
                    and not status.get("standby"):
                return node
        return None

    def active(self) -> RaftNode:
        """The active node; waits for one (an election may be under way)."""
        found: list[RaftNode] = []

        def elected() -> bool:
            node = self.active_or_none()
            if node is not None:
                found.append(node)
            return node is not None
        self.wait(elected, ELECTION_TIMEOUT_SECONDS, "an active node")
        return found[-1]

    def standbys(self) -> list[RaftNode]:
        """Running, unsealed nodes that are not active."""
        active = self.active()
        return [n for n in self.nodes if n.running and n is not active]

    def wait_new_leader(self, old: RaftNode) -> tuple[RaftNode, float]:
        """Wait until a node other than ``old`` is active; return it and the seconds waited."""
        started = time.monotonic()
        found: list[RaftNode] = []

        def elected() -> bool:
            node = self.active_or_none()
            if node is not None and node is not old:
                found.append(node)
                return True
            return False
        self.wait(elected, ELECTION_TIMEOUT_SECONDS, f"a leader other than {old.node_id}")
        return found[-1], time.monotonic() - started

    def voters(self) -> dict[str, bool]:
        """``{node_id: voter}`` from the raft configuration the active node reports."""
        answer = self.client().adapter.get("/v1/sys/storage/raft/configuration")
        servers = answer["data"]["config"]["servers"]
        return {str(s["node_id"]): bool(s["voter"]) for s in servers}

    def wait_voters(self, count: int = NODES, timeout: float = 90) -> None:
        """Wait until ``count`` nodes are raft voters (autopilot promotes joiners)."""
        def enough() -> bool:
            return sum(self.voters().values()) >= count
        self.wait(enough, timeout, f"{count} raft voters")

    def wait_serving(self, node: RaftNode | None = None, timeout: float = 60) -> None:
        """Wait until ``node`` (default: the active one) answers an authenticated request."""
        def serving() -> bool:
            self.client(node, timeout=3).auth.token.lookup_self()
            return True
        self.wait(serving, timeout, "an authenticated request")

    def wait_kv2(self, mount: str, timeout: float = 60) -> None:
        """Wait until a kv-v2 mount takes writes (its upgrade to versioned data is done)."""
        probe = "tradepulse-cluster-probe/upgraded"

        def upgraded() -> bool:
            # While upgrading, reads and writes answer 400 "Waiting for the primary to
            # upgrade...". A standby that has not yet applied the new mount table answers
            # 404 "no handler for route" - a 404 too, but the mount (and its own upgrade
            # wait) is still to come there. Done is the KV engine's own 404: no errors.
            # Each standby checks its own copy of the flag before forwarding: ask them all.
            for node in self.nodes:
                if not node.running:
                    continue
                answer = requests.get(f"{node.address}/v1/{mount}/metadata/{probe}",
                                      headers={"X-Vault-Token": self.root_token},
                                      allow_redirects=False, timeout=3)
                if answer.status_code != 404 or answer.json().get("errors"):
                    return False
            return True
        self.wait(upgraded, timeout, f"kv-v2 mount {mount} upgraded on every node")

    def enable_kv2(self, mount: str, **configuration: Any) -> None:
        """Enable a kv-v2 mount, wait for its upgrade, then configure it (cas_required...)."""
        self.client().sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
        self.wait_kv2(mount)
        if configuration:
            self.client().secrets.kv.v2.configure(mount_point=mount, **configuration)

    @staticmethod
    def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` until true; Vault and connection errors count as not yet."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (hvac.exceptions.VaultError, requests.RequestException, OSError) as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"raft cluster: {what} not reached within {timeout}s "
                           f"(last error: {type(last).__name__ if last else None}: "
                           f"{str(last)[:200] if last else ''})")


class ActiveNodeProxy(TcpProxy):
    """A load balancer in front of the cluster: each new connection goes to the active node.

    What production puts in front of Vault (a health check on ``sys/health``,
    which answers 200 only on the active node). While no node is active a new
    connection is reset, as a load balancer with no healthy backend does; the
    connections open to a killed leader die with it.
    """

    def __init__(self, cluster: RaftCluster) -> None:
        self.cluster = cluster
        super().__init__(cluster.nodes[0].api_port)

    def _connect_upstream(self) -> socket.socket:
        node = self.cluster.active_or_none()
        if node is None:
            raise OSError("no active node")
        self.upstream = ("127.0.0.1", node.api_port)
        return socket.create_connection(self.upstream, timeout=5)


def start_raft_cluster(root: Path, *, extra_config: str = "", detach: bool = False,
                       nodes: int = NODES, subdirs: tuple[str, ...] = ()) -> RaftCluster:
    """Start, initialise and unseal a raft cluster in ``root``; wait until all are voters.

    ``extra_config`` is appended to every node's config (audit stanzas: a
    relative ``file_path`` lands in the node's own directory, its cwd).
    ``detach`` starts the servers in their own sessions (``make up-cluster``);
    ``subdirs`` are created in every node's directory (for those audit files).
    """
    root.mkdir(parents=True, exist_ok=True)
    ports = [(free_port(), free_port()) for _ in range(nodes)]
    members: list[RaftNode] = []
    for index, (api_port, cluster_port) in enumerate(ports, start=1):
        workdir = root / f"node{index}"
        for sub in ("raft", *subdirs):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        node = RaftNode(f"node{index}", api_port, cluster_port, workdir)
        node.config_path.write_text(node_config(
            node, [p for p, _ in ports if p != api_port], extra_config))
        members.append(node)
    cluster = RaftCluster(root, members, extra_config, detach)
    try:
        for node in members:
            cluster.start_node(node)
        first = members[0]
        answer = first.client().sys.initialize(secret_shares=1, secret_threshold=1)
        cluster.root_token = str(answer["root_token"])
        cluster.unseal_key = str(answer["keys_base64"][0])
        init = root / "init.json"
        fd = os.open(init, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"root_token": cluster.root_token, "unseal_keys_b64": [cluster.unseal_key],
                       "nodes": [n.address for n in members]}, handle)
        cluster.unseal(first)
        cluster.wait_serving(first)

        def tuned() -> bool:
            # Joiners become voters once stable for this long (default 10 s). Retried:
            # right after unsealing, the node may still be taking over as active.
            cluster.client(first).adapter.post(
                "/v1/sys/storage/raft/autopilot/configuration",
                json={"server_stabilization_time": "1s", "cleanup_dead_servers": False})
            return True
        cluster.wait(tuned, 30, "autopilot configured")
        for node in members[1:]:
            cluster.unseal(node)
        cluster.wait_voters(nodes)
        for node in members:
            cluster.wait_serving(node)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def raft_cluster(root: Path, *, extra_config: str = "") -> Iterator[RaftCluster]:
    """A started cluster for the duration of the ``with`` block, stopped afterwards."""
    cluster = start_raft_cluster(root, extra_config=extra_config)
    try:
        yield cluster
    finally:
        cluster.stop()
