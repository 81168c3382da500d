"""Shared helpers of the reliability suite: CLI subprocesses, state snapshots, fault proxies.

* :func:`run_cli` runs ``python -m rotation`` as a real process with a clean
  environment (no inherited ``VAULT_*``/``BAO_*``), the way an operator does.
* :class:`State` captures everything a failed command must leave alone: every
  file of the temporary repository (bytes) and the live KV v2 version of every
  secret under the ``secret`` mount. Two snapshots compare equal when nothing
  changed.
* :class:`FaultProxy` extends the test suite's :class:`TcpProxy` with latency
  per forwarded chunk and a hook that runs before the client's n-th HTTP
  request is forwarded (a token made to expire exactly there).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions

from tests.conftest import REPO_ROOT
from tests.rotation.tcp_proxy import TcpProxy

SECRET_MOUNT = "secret"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no inherited Vault variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
            stdin: str | bytes | None = None, timeout: float = 90
            ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rotation ARGS`` and return the finished process (text output)."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run([sys.executable, "-m", "rotation", *args], cwd=cwd,
                          env=env if env is not None else child_env(), input=data,
                          capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"))


def repo_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except git's own, as ``{relative path: bytes}``."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if ".git" in rel.parts or not path.is_file():
            continue
        out[str(rel)] = path.read_bytes()
    return out


def kv_versions(client: hvac.Client, mount: str = SECRET_MOUNT) -> dict[str, int]:
    """``{path: current_version}`` of every secret under ``mount`` (recursive listing)."""
    versions: dict[str, int] = {}
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            keys = client.secrets.kv.v2.list_secrets(path=prefix, mount_point=mount)["data"]["keys"]
        except hvac.exceptions.InvalidPath:
            continue
        for key in keys:
            if key.endswith("/"):
                pending.append(prefix + key)
            else:
                meta = client.secrets.kv.v2.read_secret_metadata(path=prefix + key,
                                                                 mount_point=mount)
                versions[prefix + key] = int(meta["data"]["current_version"])
    return versions


@dataclass(frozen=True)
class State:
    """What a failed command must not change: repository files and live KV versions."""

    files: dict[str, bytes]
    kv: dict[str, int] | None

    @classmethod
    def take(cls, root: Path, client: hvac.Client | None = None) -> State:
        """Snapshot ``root`` (and, given a client that can read, the live KV versions)."""
        return cls(repo_files(root), kv_versions(client) if client is not None else None)

    def diff(self, other: State) -> list[str]:
        """What differs between two snapshots, by name (empty: nothing changed; KV if both read)."""
        changed = [f"file {name}" for name in sorted(set(self.files) | set(other.files))
                   if self.files.get(name) != other.files.get(name)]
        if self.kv is not None and other.kv is not None and self.kv != other.kv:
            changed.append(f"kv versions {self.kv} -> {other.kv}")
        return changed


class FaultProxy(TcpProxy):
    """A :class:`TcpProxy` that can delay every forwarded chunk and intercept the n-th request.

    ``delay`` seconds are slept before each chunk is forwarded (either
    direction). ``before_request(n, hook)`` runs ``hook`` in the pump thread
    before the n-th HTTP request (counted over every connection) reaches the
    server; the request waits for it.
    """

    def __init__(self, upstream_port: int, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests = 0
        self._hooks: dict[int, Callable[[], None]] = {}
        self._count_lock = threading.Lock()
        super().__init__(upstream_port)

    def before_request(self, number: int, hook: Callable[[], None]) -> None:
        """Run ``hook`` before request ``number`` (1-based) is forwarded."""
        self._hooks[number] = hook

    def _before_forward(self, chunk: bytes, to_server: bool) -> None:
        if self.delay:
            time.sleep(self.delay)
        if to_server:
            for _ in range(chunk.count(b" HTTP/1.1\r\n")):
                with self._count_lock:
                    self.requests += 1
                    hook = self._hooks.pop(self.requests, None)
                if hook is not None:
                    hook()


def wait_token_gone(root_client: hvac.Client, token: str, timeout: float = 30) -> None:
    """Block until Vault no longer accepts ``token`` (its TTL ran out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            root_client.auth.token.lookup(token)
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            return
        time.sleep(0.1)
    raise AssertionError(f"token still valid after {timeout}s")
