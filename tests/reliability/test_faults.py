"""Faults: every Vault-facing command, with Vault sealed, unreachable, dropping, slow, and a
token that expires mid-command; plus output locations that stop being writable.

Commands: preflight, verify, drift, due, kv-put, secrets-issue-dynamic and
record, run in-process through ``rotation.cli.main`` (a traceback would fail
the test). For each fault the command must exit with its documented code
(3: unreachable or sealed; 1: the token was refused), print a message with
what to do (``hint:``), and leave the repository's files and the live KV
versions exactly as they were. On a slow link (a proxy delaying every chunk)
each command still succeeds with the right result. The faults are real: the
server is sealed through ``sys/seal``, a closed port refuses, the test
suite's TCP proxy resets connections, and a 2-second token is made to expire
right before the command's n-th HTTP request reaches the server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from tests.reliability.support import FaultProxy, State, wait_token_gone
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi
from tests.rotation.dynamic_support import configure_database, live_leases

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"
ROLE = "tradepulse-execution"
COMMANDS = ("preflight", "verify", "drift", "due", "kv-put", "secrets-issue-dynamic", "record")
# The request (1-based, over all connections) before which the token expires: past the
# command's first request where it makes several, the write itself for kv-put (after
# sys/health, sys/leader, the mount check and the read).
EXPIRE_AT = {"preflight": 2, "verify": 2, "drift": 2, "due": 2, "kv-put": 5,
             "secrets-issue-dynamic": 1, "record": 2}

Argv = Callable[[str, str], list[str]]


@pytest.fixture
def world(openbao: Any, postgres: Any, stack_repo: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A server with the local stack applied and a database role; argv per command."""
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=10, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local")
    configure_database(client, postgres, {ROLE: (300, 1800)})
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    monkeypatch.setenv("NEW_VALUE", "fault-test-value")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    audit = str(openbao.workdir / ".local" / "openbao" / "audit.log")
    out = tmp_path / "out"

    def argv(command: str, address: str) -> list[str]:
        stack = ["--stack", "local", "--repo", str(stack_repo), "--address", address]
        return {
            "preflight": ["preflight", *stack, "--skip-lock-check"],
            "verify": ["verify", *stack, "--secret", SIGNING, "--audit-log", audit],
            "drift": ["drift", *stack],
            "due": ["due", *stack, "--now", "2000-01-01"],
            "kv-put": ["kv-put", "--address", address, "--path", "teams/fault", "--set",
                       "K=NEW_VALUE", "--repo", str(stack_repo)],
            "secrets-issue-dynamic": ["secrets-issue-dynamic", "--address", address, "--role",
                                      ROLE, "--output", str(out / "creds.json"),
                                      "--timeout", "5"],
            "record": ["record", *stack, "--secret", SIGNING, "--date", "2026-01-01"],
        }[command]

    return {"server": openbao, "postgres": postgres, "repo": stack_repo, "argv": argv,
            "out": out, "tmp": tmp_path}


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict[str, Any], str]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def snapshot(world: dict[str, Any], *, kv: bool = True) -> State:
    state = State.take(world["tmp"], world["server"].client() if kv else None)
    return state


def assert_failed_cleanly(world: dict[str, Any], capsys: pytest.CaptureFixture[str],
                          command: str, *, address: str, code: int, says: tuple[str, ...],
                          before: State, kv: bool = True) -> None:
    got, out, err = run(capsys, world["argv"](command, address))
    assert got == code, f"{command}: exit {got}, expected {code}: {err}"
    assert out["ok"] is False and out["exit_code"] == code
    assert any(s in out["error"] for s in says), f"{command}: {out['error']}"
    assert out["hint"], f"{command}: no hint saying what to do"
    assert f"hint: {out['hint']}" in err
    after = snapshot(world, kv=kv)
    assert before.diff(after) == [], f"{command} changed {before.diff(after)}"
    assert not world["out"].exists(), f"{command} left {world['out']}"


def test_sealed_vault_is_exit_3_for_every_command(world: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    server = world["server"]
    before = snapshot(world)
    server.client().sys.seal()
    for command in COMMANDS:
        assert_failed_cleanly(world, capsys, command, address=server.address, code=3,
                              says=("sealed",), before=before, kv=False)
    print(f"faults: sealed x {len(COMMANDS)}")


def test_unreachable_vault_is_exit_3_for_every_command(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], refused_url: Callable[[], str],
) -> None:
    before = snapshot(world)
    closed = refused_url()
    for command in COMMANDS:
        assert_failed_cleanly(world, capsys, command, address=closed, code=3,
                              says=("cannot reach Vault",), before=before)


def test_dropped_connections_are_exit_3_for_every_command(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(world)
    with FaultProxy(world["server"].port) as proxy:
        proxy.cut()
        for command in COMMANDS:
            assert_failed_cleanly(world, capsys, command, address=proxy.address, code=3,
                                  says=("cannot reach Vault",), before=before)
        assert proxy.refused >= len(COMMANDS)


def test_a_token_expiring_mid_command_is_refused_and_changes_nothing(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = world["server"]
    root = server.client()
    for command in COMMANDS:
        before = snapshot(world)
        token = root.auth.token.create(ttl="2s", explicit_max_ttl="2s")["auth"]["client_token"]
        monkeypatch.setenv("VAULT_TOKEN", token)
        with FaultProxy(server.port) as proxy:
            proxy.before_request(EXPIRE_AT[command],
                                 lambda token=token: wait_token_gone(root, token))
            assert_failed_cleanly(world, capsys, command, address=proxy.address, code=1,
                                  says=("permission denied", "token rejected"), before=before)
            assert proxy.requests >= EXPIRE_AT[command]
        assert live_leases(root, ROLE) == []


def test_a_slow_link_still_gives_the_right_result(world: dict[str, Any],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    server = world["server"]
    with FaultProxy(server.port, delay=0.05) as proxy:
        for command in COMMANDS:
            code, out, err = run(capsys, world["argv"](command, proxy.address))
            assert code == 0, f"{command}: {err}"
            assert out["ok"] is True
    client = server.client()
    assert client.secrets.kv.v2.read_secret_version(
        path="teams/fault", mount_point="secret", raise_on_deleted_version=True,
    )["data"]["data"] == {"K": "fault-test-value"}
    creds = json.loads((world["out"] / "creds.json").read_text())
    assert live_leases(client, ROLE) == [creds["lease_id"]]
    assert (world["repo"] / "reports/security/secret-rotations/2026-01-01.md").is_file()


def test_output_directory_replaced_by_a_file_after_the_check_revokes_the_lease(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    server, out = world["server"], world["out"]
    out.mkdir()

    def break_output_dir() -> None:  # after the path check, before Vault answers
        shutil.rmtree(out)
        out.write_text("not a directory any more\n")

    with FaultProxy(server.port) as proxy:
        proxy.before_request(1, break_output_dir)
        code, doc, err = run(capsys, world["argv"]("secrets-issue-dynamic", proxy.address))
    # The journal beside the file is the first write to fail; either way: exit 2, revoked.
    assert code == 2, err
    assert str(out) in doc["error"] and "cannot" in doc["error"]
    assert "revoked" in doc["hint"] and "writable" in doc["hint"]
    assert "revoked lease database/creds/" in err
    assert live_leases(server.client(), ROLE) == []
    assert int(world["postgres"].psql(
        f"select count(*) from pg_roles where rolname like 'v-%-{ROLE}-%'")) == 0
    assert out.read_text() == "not a directory any more\n"


def test_record_with_an_unwritable_records_directory_says_what_it_wrote(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    repo = world["repo"]
    (repo / "reports").write_text("a file where the records directory should be\n")
    before = snapshot(world)
    code, doc, err = run(capsys, world["argv"]("record", world["server"].address))
    assert code == 2, err
    assert "reports/security/secret-rotations" in doc["error"] and "nothing" in doc["error"]
    assert before.diff(snapshot(world)) == []
    # The record is written but the services table cannot be: it says exactly that.
    (repo / "reports").unlink()
    (repo / "docs").write_text("a file where docs/ should be\n")
    code, doc, err = run(capsys, world["argv"]("record", world["server"].address))
    assert code == 2, err
    assert "reports/security/secret-rotations/2026-01-01.md" in doc["error"]
    assert "docs/services.md" in doc["error"]
    assert (repo / "reports/security/secret-rotations/2026-01-01.md").is_file()
