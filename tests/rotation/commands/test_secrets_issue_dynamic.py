"""``secrets-issue-dynamic`` and ``revoke`` end to end, against real OpenBao and PostgreSQL.

The runbook line runs as a subprocess exactly as written (module name aside);
``--watch`` runs as a subprocess that a checker thread reads while it logs in
with whatever the file holds, until SIGTERM. Error cases run in-process
through ``rotation.cli.main``. Every test ends with a canary check: no
password or user name Vault issued may appear on stdout, stderr or in logs.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import kernel.atomic
from rotation.cli import main
from rotation.commands.secrets_issue_dynamic import journal_path
from tests.rotation.dynamic_support import (
    can_login,
    configure_database,
    create_role,
    lease_live,
    live_leases,
    wait_until,
)
from tests.rotation.tcp_proxy import TcpProxy
from tests.servers import start_openbao

pytestmark = pytest.mark.integration

RUNBOOK_ROLE = "tradepulse-execution"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[Any]:
    """One dev server for this module; each test creates the roles it uses."""
    server = start_openbao(tmp_path_factory.mktemp("bao-cli"))
    try:
        configure_database(server.client(), postgres, {}, any_role=True)
        yield server
    finally:
        server.stop()


@pytest.fixture
def env_file(tmp_path: Path, vault: Any) -> Path:
    path = tmp_path / "scripts.env"
    path.write_text(f"# test env\nVAULT_TOKEN={vault.root_token}\n")
    return path


def child_env() -> dict[str, str]:
    """The environment for CLI subprocesses: no inherited Vault variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}


def run_cli(args: list[str], *, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def start_cli(args: list[str], *, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rotation", *args], cwd=cwd, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_no_secrets(secrets: list[str], *texts: str) -> None:
    assert secrets, "the canary check needs the issued values"
    for secret in secrets:
        for text in texts:
            assert secret not in text, "an issued credential value leaked into the output"


def read_doc(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def pg_roles_like(postgres: Any, role: str) -> int:
    # Vault names users v-<token display name>-<role>-<random>-<timestamp>
    return int(postgres.psql(f"select count(*) from pg_roles where rolname like 'v-%-{role}-%'"))


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# -- one-shot ------------------------------------------------------------------------------


def test_runbook_line_issues_working_credentials_then_revoke_removes_them(
    vault: Any, postgres: Any, tmp_path: Path, env_file: Path
) -> None:
    create_role(vault.client(), RUNBOOK_ROLE, 300, 1800)
    before = time.time()
    proc = run_cli(["--env-file", str(env_file), "secrets-issue-dynamic",
                    "--address", vault.address, "--mount", "database", "--role", RUNBOOK_ROLE,
                    "--token-env", "VAULT_TOKEN",
                    "--output", "state/vault/dynamic_execution.json",
                    "--refresh-margin", "120"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    output = tmp_path / "state" / "vault" / "dynamic_execution.json"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert stat.S_IMODE(output.parent.stat().st_mode) == 0o700
    doc = read_doc(output)
    assert set(doc) >= {"username", "password", "lease_id", "lease_duration", "renewable",
                        "issued_at", "expires_at", "role", "mount"}
    assert (doc["role"], doc["mount"], doc["lease_duration"], doc["renewable"]) == \
        (RUNBOOK_ROLE, "database", 300, True)
    assert before - 1 <= ts(doc["issued_at"]) <= time.time()
    assert ts(doc["expires_at"]) - ts(doc["issued_at"]) == pytest.approx(300)
    assert can_login(postgres, doc["username"], doc["password"])
    assert doc["lease_id"] in proc.stdout and doc["expires_at"] in proc.stdout
    assert "state/vault/dynamic_execution.json" in proc.stdout
    assert not journal_path(output).exists()
    assert lease_live(vault.client(), doc["lease_id"]), "one-shot leaves the lease to its TTL"

    revoked = run_cli(["--env-file", str(env_file), "revoke", "--lease-id", doc["lease_id"],
                       "--address", vault.address], cwd=tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert "verified" in revoked.stdout
    assert not lease_live(vault.client(), doc["lease_id"])
    assert not can_login(postgres, doc["username"], doc["password"])

    again = run_cli(["--env-file", str(env_file), "revoke", "--json", "--lease-id",
                     doc["lease_id"], "--address", vault.address], cwd=tmp_path)
    assert again.returncode == 1
    assert "not live" in json.loads(again.stdout)["error"]
    assert_no_secrets([doc["password"], doc["username"]], proc.stdout, proc.stderr,
                      revoked.stdout, revoked.stderr, again.stdout, again.stderr)


def test_json_output_names_the_lease_and_never_the_credentials(
    vault: Any, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    create_role(vault.client(), "json-role", 60, 120)
    monkeypatch.setenv("CLI_TOKEN", vault.root_token)
    output = tmp_path / "creds.json"
    code = main(["secrets-issue-dynamic", "--json", "--address", vault.address,
                 "--role", "json-role", "--token-env", "CLI_TOKEN", "--output", str(output)])
    out, err = capsys.readouterr()
    assert code == 0, err
    payload = json.loads(out)
    doc = read_doc(output)
    assert payload["ok"] is True and payload["watch"] is False
    for key in ("lease_id", "lease_duration", "renewable", "issued_at", "expires_at", "role",
                "mount"):
        assert payload[key] == doc[key]
    assert payload["output"] == str(output)
    assert "username" not in payload and "password" not in payload
    assert_no_secrets([doc["password"], doc["username"]], out, err)
    vault.client().sys.revoke_lease(doc["lease_id"])


# -- errors: a clear message, the documented code, no file, no lease ----------------------


@dataclass
class Case:
    args: list[str]
    code: int
    message: str
    env: dict[str, str] = field(default_factory=dict)


def error_cases(vault: Any, tmp_path: Path, refused: str) -> dict[str, Case]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    base = ["--role", "errors", "--output", str(tmp_path / "out" / "creds.json")]
    return {
        "vault unreachable": Case(["--address", refused, *base], 3,
                                  "cannot reach Vault"),
        "bad token": Case(["--address", vault.address, *base], 1, "permission denied",
                          {"VAULT_TOKEN": "not-a-token"}),
        "unknown role": Case(["--address", vault.address, "--role", "nope", "--output",
                              str(tmp_path / "out" / "creds.json")], 2,
                             "role 'nope' does not exist"),
        "unknown mount": Case(["--address", vault.address, "--mount", "nowhere", *base], 2,
                              "no database secrets engine is mounted at 'nowhere'"),
        "token variable unset": Case(["--address", vault.address, "--token-env", "UNSET_TOKEN",
                                      *base], 2, "UNSET_TOKEN is not set"),
        "no address": Case(base, 2, "no Vault address"),
        "address without scheme": Case(["--address", "vault:8200", *base], 2,
                                       "must start with http"),
        "output is a directory": Case(["--address", vault.address, "--role", "errors",
                                       "--output", str(tmp_path)], 2, "is a directory"),
        "output under a file": Case(["--address", vault.address, "--role", "errors", "--output",
                                     str(a_file / "creds.json")], 2, "is not a directory"),
        "negative margin": Case(["--address", vault.address, "--refresh-margin", "-1", *base],
                                2, "must be >= 0"),
    }


@pytest.mark.parametrize("name", [
    "vault unreachable", "bad token", "unknown role", "unknown mount", "token variable unset",
    "no address", "address without scheme", "output is a directory", "output under a file",
    "negative margin",
])
@pytest.mark.parametrize("as_json", [False, True])
def test_errors_exit_with_their_code_and_write_nothing(
    *, vault: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], name: str, as_json: bool,
    refused_url: Callable[[], str],
) -> None:
    create_role(vault.client(), "errors", 60, 120)
    case = error_cases(vault, tmp_path, refused_url())[name]
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.setenv("VAULT_TOKEN", case.env.get("VAULT_TOKEN", vault.root_token))
    before = set(tmp_path.rglob("*"))
    code = main(["secrets-issue-dynamic", *(["--json"] if as_json else []), *case.args])
    out, err = capsys.readouterr()
    assert code == case.code, (out, err)
    assert case.message in err
    if as_json:
        doc = json.loads(out)
        assert doc["ok"] is False and doc["exit_code"] == case.code
        assert case.message in doc["error"]
    else:
        assert out == ""
    assert set(tmp_path.rglob("*")) == before, "nothing may be written"
    assert live_leases(vault.client(), "errors") == []


def test_a_missing_env_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    code = main(["--env-file", str(tmp_path / "missing.env"), "secrets-issue-dynamic",
                 "--address", "http://127.0.0.1:1", "--role", "r", "--output",
                 str(tmp_path / "o.json")])
    assert code == 2
    assert "env file does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# -- a crash between issue and write ------------------------------------------------------


@pytest.mark.parametrize(("failure", "code"), [
    (OSError(errno.ENOSPC, "No space left on device"), 2),
    (KeyboardInterrupt(), 130),
])
def test_a_crash_between_issue_and_write_leaves_no_live_lease(
    *, vault: Any, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], failure: BaseException, code: int
) -> None:
    role = f"crash{code}"  # Vault puts at most 8 characters of the role in the user name
    create_role(vault.client(), role, 60, 120)
    output = tmp_path / "creds.json"
    real_write = kernel.atomic.write_text_atomic

    def failing_write(path: Any, text: str, *, mode: int = 0o600) -> None:
        if Path(path) == output:  # the journal still works; the credentials file does not
            raise failure
        real_write(path, text, mode=mode)

    monkeypatch.setattr(kernel.atomic, "write_text_atomic", failing_write)
    monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
    result = main(["secrets-issue-dynamic", "--address", vault.address, "--role", role,
                   "--output", str(output)])
    _, err = capsys.readouterr()
    assert result == code
    assert not output.exists() and not journal_path(output).exists()
    assert live_leases(vault.client(), role) == []
    assert pg_roles_like(postgres, role) == 0, "the database login was dropped too"
    assert "revoked lease" in err and "could not be handed over" in err
    # the pattern above does find this role's logins: the zero is not vacuous
    lease = vault.client().secrets.database.generate_credentials(role, mount_point="database")
    assert pg_roles_like(postgres, role) == 1
    vault.client().sys.revoke_lease(lease["lease_id"])


CRASH_WRAPPER = """
import os, signal, sys
from pathlib import Path
import kernel.atomic
real = kernel.atomic.write_text_atomic
target = Path(sys.argv[1]).resolve()
def write(path, text, *, mode=0o600):
    if Path(path).resolve() == target:
        os.kill(os.getpid(), signal.SIGKILL)  # killed after the issue, before the write
    real(path, text, mode=mode)
kernel.atomic.write_text_atomic = write
from rotation.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_hard_kill_between_issue_and_write_is_cleaned_up_by_the_next_run(
    vault: Any, postgres: Any, tmp_path: Path, env_file: Path
) -> None:
    create_role(vault.client(), "killed", 60, 120)
    output = tmp_path / "creds.json"
    args = ["--env-file", str(env_file), "secrets-issue-dynamic", "--address", vault.address,
            "--role", "killed", "--output", str(output)]
    killed = subprocess.run([sys.executable, "-c", CRASH_WRAPPER, str(output), *args],
                            cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                            timeout=60, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert not output.exists()
    pending = json.loads(journal_path(output).read_text())["pending"]
    assert len(pending) == 1 and lease_live(vault.client(), pending[0])
    assert stat.S_IMODE(journal_path(output).stat().st_mode) == 0o600

    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"revoked leftover lease {pending[0]}" in proc.stdout
    assert not lease_live(vault.client(), pending[0])
    assert not journal_path(output).exists()
    doc = read_doc(output)
    assert live_leases(vault.client(), "killed") == [doc["lease_id"]]
    assert can_login(postgres, doc["username"], doc["password"])
    assert_no_secrets([doc["password"]], proc.stdout, proc.stderr)
    vault.client().sys.revoke_lease(doc["lease_id"])


# -- --watch ------------------------------------------------------------------------------


@dataclass
class Watcher:
    """Reads the output file and logs in with it, over and over, recording what it sees."""

    postgres: Any
    client: Any
    path: Path
    leases: list[str] = field(default_factory=list)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: set[tuple[str, str]] = field(default_factory=set)  # (lease, expires_at) pairs
    logins: int = 0
    failures: list[str] = field(default_factory=list)
    revoked_early: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def check_once(self) -> None:
        if not self.path.exists():
            return
        doc = read_doc(self.path)  # a reader never sees a partial file: this always parses
        assert stat.S_IMODE(self.path.stat().st_mode) == 0o600
        lease = doc["lease_id"]
        self.versions.add((lease, doc["expires_at"]))
        if not self.leases or self.leases[-1] != lease:
            if self.leases:
                self._check_replaced(self.leases[-1])
            self.leases.append(lease)
            self.docs[lease] = doc
        try:
            ok = can_login(self.postgres, doc["username"], doc["password"])
            problem = "refused"
        except RuntimeError as exc:  # any other psql failure counts as well
            ok, problem = False, str(exc)
        if ok:
            self.logins += 1
        elif read_doc(self.path)["lease_id"] == lease:
            # the file still held these credentials when they failed: a real gap. (If it
            # changed meanwhile, the swap revoked what this check had read a moment ago.)
            self.failures.append(f"{lease} {problem} at {time.time():.3f}")

    def _check_replaced(self, old: str) -> None:
        """The replaced lease must be revoked right away, well before it would expire."""
        expires = max(ts(e) for lease, e in self.versions if lease == old)
        deadline = time.monotonic() + 1.0
        while lease_live(self.client, old):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        if time.time() < expires:
            self.revoked_early.append(old)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.check_once()
                time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test thread
            self.errors.append(exc)

    def saw(self, leases: int, versions: int) -> bool:
        if self.errors:
            raise self.errors[0]
        return len(self.leases) >= leases and len(self.versions) >= versions


def test_watch_keeps_working_credentials_in_the_file_across_renewals_and_max_ttl(
    vault: Any, postgres: Any, tmp_path: Path, env_file: Path
) -> None:
    # 4 s leases, max_ttl 7 s: renewed at 2 s and 4 s, replaced at ~5 s, every cycle
    create_role(vault.client(), "watch", 4, 7)
    output = tmp_path / "run" / "watch.json"
    proc = start_cli(["--env-file", str(env_file), "secrets-issue-dynamic", "-v", "--json",
                      "--address", vault.address, "--role", "watch", "--output", str(output),
                      "--refresh-margin", "2", "--watch"], cwd=tmp_path)
    watcher = Watcher(postgres, vault.client(), output)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: watcher.saw(leases=3, versions=6), 30,
                   "three leases and several renewals in the file")
    finally:
        watcher.stop.set()
        thread.join(10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert watcher.errors == []
    assert watcher.failures == [], watcher.failures
    assert watcher.logins >= 20
    # every replaced lease was revoked right after the swap, before its own expiry
    assert watcher.revoked_early == watcher.leases[:len(watcher.revoked_early)]
    assert len(watcher.revoked_early) >= 2
    result = json.loads(out)
    assert result["stopped_by"] == "SIGTERM" and result["watch"] is True
    assert result["renewals"] >= 3 and result["replacements"] >= 2
    final = read_doc(output)
    assert result["lease_id"] == final["lease_id"]
    assert result["revoked"] == [final["lease_id"]] and result["not_revoked"] == []
    assert not lease_live(vault.client(), final["lease_id"])
    assert not can_login(postgres, final["username"], final["password"])
    assert live_leases(vault.client(), "watch") == []
    assert "renewed lease" in err and "revoked the old one" in err
    secrets = [v for doc in watcher.docs.values() for v in (doc["password"], doc["username"])]
    assert_no_secrets(secrets, out, err)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_watch_and_revokes(vault: Any, postgres: Any, tmp_path: Path,
                                              env_file: Path, signum: int) -> None:
    role = f"sig-{signum}"
    create_role(vault.client(), role, 60, 120)
    output = tmp_path / "creds.json"
    proc = start_cli(["--env-file", str(env_file), "secrets-issue-dynamic", "--address",
                      vault.address, "--role", role, "--output", str(output), "--watch"],
                     cwd=tmp_path)
    try:
        wait_until(output.exists, 15, "the first credentials")
        doc = read_doc(output)
        assert can_login(postgres, doc["username"], doc["password"])
    finally:
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert f"revoked lease {doc['lease_id']}" in out
    assert not lease_live(vault.client(), doc["lease_id"])
    assert not can_login(postgres, doc["username"], doc["password"])
    assert_no_secrets([doc["password"], doc["username"]], out, err)


def test_no_revoke_on_exit_leaves_the_lease_alive(vault: Any, postgres: Any, tmp_path: Path,
                                                  env_file: Path) -> None:
    create_role(vault.client(), "keep", 60, 120)
    output = tmp_path / "creds.json"
    proc = start_cli(["--env-file", str(env_file), "secrets-issue-dynamic", "--json",
                      "--address", vault.address, "--role", "keep", "--output", str(output),
                      "--watch", "--no-revoke-on-exit"], cwd=tmp_path)
    try:
        wait_until(output.exists, 15, "the first credentials")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    doc = read_doc(output)
    result = json.loads(out)
    assert result["left_alive"] is True and result["revoked"] == []
    assert lease_live(vault.client(), doc["lease_id"])
    assert can_login(postgres, doc["username"], doc["password"])
    vault.client().sys.revoke_lease(doc["lease_id"])


def test_watch_escalates_with_exit_code_4_when_vault_stays_unreachable(
    vault: Any, postgres: Any, tmp_path: Path, env_file: Path
) -> None:
    create_role(vault.client(), "escalate", 4, 120)
    output = tmp_path / "creds.json"
    with TcpProxy(vault.port) as proxy:
        proc = start_cli(["--env-file", str(env_file), "secrets-issue-dynamic", "--json",
                          "--address", proxy.address, "--role", "escalate", "--output",
                          str(output), "--watch", "--escalate-after", "1"], cwd=tmp_path)
        try:
            wait_until(output.exists, 15, "the first credentials")
            proxy.cut()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 4, err
    error = json.loads(out)
    assert error["exit_code"] == 4 and "unavailable" in error["error"]
    assert "security on-call" in error["hint"]
    doc = read_doc(output)
    assert doc["lease_id"] in error["error"]
    # it tried to revoke (--revoke-on-failure) and says how to finish the job
    assert f"revoke --lease-id {doc['lease_id']}" in err
    assert_no_secrets([doc["password"], doc["username"]], out, err)
    vault.client().sys.revoke_lease(doc["lease_id"])
    assert not lease_live(vault.client(), doc["lease_id"])


def engine_on_port(client: Any, mount: str, port: int, user: str, password: str, *,
                   role: str, verify: bool = True) -> None:
    """Mount a database engine at ``mount`` whose connection goes to 127.0.0.1:``port``."""
    from tests.rotation.dynamic_support import CONNECTION

    client.sys.enable_secrets_engine("database", path=mount)
    client.secrets.database.configure(
        name=CONNECTION, plugin_name="postgresql-database-plugin",
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{port}/postgres",
        username=user, password=password, allowed_roles=["*"], verify_connection=verify,
        mount_point=mount)
    create_role(client, role, 60, 120, mount=mount)


def test_a_root_password_the_database_refuses_says_a_root_rotation_may_be_under_way(
    vault: Any, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issues sent beside a rotate-root fail so (bench/rotate_root_race.py); say so, once."""
    client = vault.client()
    mount = "database-wrong-root"
    wrong = "tp-canary-not-the-root-password"
    try:
        engine_on_port(client, mount, postgres.port, postgres.superuser, wrong,
                       role="wrong-root", verify=False)
        monkeypatch.delenv("VAULT_ADDR", raising=False)
        monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
        output = tmp_path / "creds.json"
        code = main(["secrets-issue-dynamic", "--address", vault.address, "--mount", mount,
                     "--role", "wrong-root", "--output", str(output), "--json"])
        out, err = capsys.readouterr()
        assert code == 5, err
        error = json.loads(out)
        assert "the database refused Vault's credentials" in error["error"]
        assert error["hint"].startswith("re-run in a few seconds if the connection's root "
                                        "password is being rotated")
        assert "if it persists" in error["hint"] and f"bao read {mount}/config/" in error["hint"]
        assert wrong not in out + err and postgres.superuser not in out + err
        assert not output.exists()
    finally:
        client.sys.disable_secrets_engine(mount)


def test_a_database_that_is_down_has_its_own_message_and_exit_code(
    vault: Any, postgres: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = vault.client()
    mount = "database-behind-proxy"
    with TcpProxy(postgres.port) as proxy:
        engine_on_port(client, mount, proxy.port, postgres.superuser, postgres.password,
                       role="behind-proxy")
        monkeypatch.delenv("VAULT_ADDR", raising=False)
        monkeypatch.setenv("VAULT_TOKEN", vault.root_token)
        output = tmp_path / "creds.json"
        argv = ["secrets-issue-dynamic", "--address", vault.address, "--mount", mount,
                "--role", "behind-proxy", "--output", str(output)]
        assert main(argv) == 0  # PostgreSQL up: issued through the proxy
        client.sys.revoke_lease(read_doc(output)["lease_id"])
        output.unlink()
        capsys.readouterr()
        proxy.close()  # PostgreSQL "down": nothing listens there any more
        for as_json in (False, True):
            code = main([*argv, *(["--json"] if as_json else [])])
            out, err = capsys.readouterr()
            assert code == 5, err
            assert f"the database behind {mount}/ did not serve role behind-proxy" in err
            assert "Vault itself answered" in err and "audit" not in err
            assert postgres.superuser not in out + err and postgres.password not in out + err
            if as_json:
                assert json.loads(out)["exit_code"] == 5
        assert not output.exists()
    client.sys.disable_secrets_engine(mount)
