"""Helpers for the dynamic-credential tests: database engine setup, logins, a restartable OpenBao.

Everything here talks to real servers: :func:`configure_database` points an
OpenBao database engine at the session's PostgreSQL, :func:`can_login` tries a
real password login, and :class:`PersistentBao` is a non-dev OpenBao with
on-disk storage that a test can stop, start again, and unseal.

OpenBao 2.7 has no ``storage "file"`` backend any more ("unknown storage type
file"); ``pebbledb`` is its single-node on-disk storage, so that is what the
persistent server uses. Leases, the database connection and the token survive
a restart exactly as they would with file storage.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions

from tests.servers import bao_binary, free_port

MOUNT = "database"
CONNECTION = "tradepulse-postgres"
CREATION = ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
            "VALID UNTIL '{{expiration}}';"]
REVOCATION = ['DROP ROLE IF EXISTS "{{name}}";']


def configure_database(client: hvac.Client, postgres: Any, roles: dict[str, tuple[int, int]],
                       *, mount: str = MOUNT, any_role: bool = False) -> None:
    """Enable the engine at ``mount`` and create ``roles`` as ``{name: (ttl, max_ttl)}``.

    ``any_role`` lets the connection serve roles created later with :func:`create_role`.
    """
    client.sys.enable_secrets_engine("database", path=mount)
    client.secrets.database.configure(
        name=CONNECTION, plugin_name="postgresql-database-plugin",
        connection_url=postgres.connection_url_template(), username=postgres.superuser,
        password=postgres.password, allowed_roles=["*"] if any_role else list(roles),
        mount_point=mount, max_open_connections=8,
    )
    for name, (ttl, max_ttl) in roles.items():
        create_role(client, name, ttl, max_ttl, mount=mount)


def create_role(client: hvac.Client, name: str, ttl: int, max_ttl: int, *,
                mount: str = MOUNT) -> None:
    """Create database role ``name`` issuing logins that live ``ttl`` (at most ``max_ttl``) s."""
    client.secrets.database.create_role(
        name=name, db_name=CONNECTION, creation_statements=CREATION,
        revocation_statements=REVOCATION, default_ttl=ttl, max_ttl=max_ttl, mount_point=mount,
    )


def can_login(postgres: Any, username: str, password: str) -> bool:
    """Return whether ``username``/``password`` can log in; raise on any other failure."""
    try:
        who = str(postgres.psql("select current_user", user=username, password=password))
    except RuntimeError as exc:
        # a revoked login is refused one of three ways, depending on when the role was
        # dropped: before the password check, before it, or between login and query
        refused = ("authentication failed", f'role "{username}" does not exist',
                   "invalid role OID")
        if any(reason in str(exc) for reason in refused):
            return False
        raise
    return who == username


def pg_role_exists(postgres: Any, username: str) -> bool:
    """Return whether PostgreSQL still has the role Vault created."""
    return str(postgres.psql(f"select count(*) from pg_roles where rolname = '{username}'")) == "1"


def lease_live(client: hvac.Client, lease_id: str) -> bool:
    """Return whether Vault still knows ``lease_id``."""
    try:
        client.sys.read_lease(lease_id)
    except hvac.exceptions.InvalidRequest:
        return False
    return True


def live_leases(client: hvac.Client, role: str, *, mount: str = MOUNT) -> list[str]:
    """Return the ids of every live lease of ``role``."""
    try:
        keys = client.sys.list_leases(f"{mount}/creds/{role}")["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return []
    return [f"{mount}/creds/{role}/{key}" for key in keys]


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def captured_rotation_logs() -> Iterator[io.StringIO]:
    """Capture every record of the ``rotation`` loggers at DEBUG (the canary checks read it).

    A handler on the ``rotation`` logger itself, because the CLI's
    ``setup_logging`` stops propagation to the root logger pytest watches.
    """
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("rotation")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@dataclass
class PersistentBao:
    """A non-dev OpenBao with on-disk (pebbledb) storage on loopback, restartable and sealable.

    ``initialize()`` runs ``sys/init`` with one unseal key and unseals;
    ``stop()``/``start()`` restart the process on the same port (the server
    comes back sealed, with its data); ``unseal()`` submits the key.
    """

    workdir: Path
    port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    unseal_key: str = ""
    root_token: str = ""

    @property
    def address(self) -> str:
        """The server's URL."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = None) -> hvac.Client:
        """Return an hvac client (root token by default)."""
        return hvac.Client(url=self.address, token=token or self.root_token, timeout=10)

    def _health(self) -> dict[str, Any]:
        status = hvac.Client(url=self.address, timeout=2).sys.read_health_status(
            method="GET", sealed_code=200, uninit_code=200, standby_code=200)
        assert isinstance(status, dict)
        return status

    def start(self) -> None:
        """Start the server process and wait until it answers (sealed)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.hcl"
        config.write_text(
            f'storage "pebbledb" {{\n  path = "{self.workdir / "data"}"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.address}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
        )
        with (self.workdir / "bao.log").open("ab") as log:
            self.process = subprocess.Popen(
                [bao_binary(), "server", f"-config={config}", "-log-level=warn"],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"bao exited: {(self.workdir / 'bao.log').read_text()[-2000:]}")
            try:
                self._health()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def initialize(self) -> None:
        """Initialise with a single unseal key, keep the key and root token, unseal."""
        result = hvac.Client(url=self.address, timeout=10).sys.initialize(
            secret_shares=1, secret_threshold=1)
        self.unseal_key = result["keys"][0]
        self.root_token = result["root_token"]
        self.unseal()

    def unseal(self) -> None:
        """Submit the unseal key and wait until the node is active."""
        hvac.Client(url=self.address, timeout=10).sys.submit_unseal_key(self.unseal_key)
        wait_until(lambda: (h := self._health())["sealed"] is False and not h.get("standby"),
                   30, "OpenBao to become active after unseal")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
