"""``drift`` and ``due`` against real OpenBao dev servers (never a mocked Vault).

Each test builds a throwaway repository (edited copies of the stack files and
``policies/``), seeds KV v2 with hvac to the versions it needs, and runs the
CLI in-process through ``rotation.cli.main``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import pytest
import yaml

from rotation.cli import main
from rotation.kv import parse_time
from tests.conftest import REPO_ROOT
from tests.servers import start_openbao

pytestmark = pytest.mark.integration

CANARY = "CANARY-drift-due-5e0c2a91"  # seeded as every secret value; must never be printed
SPEC_KEY = "tradepulse-vault:spec"
DAY = 24 * 60 * 60  # seconds

Edit = Callable[[dict[str, Any]], None]


def make_repo(tmp_path: Path, stacks: dict[str, Edit | None]) -> Path:
    """Copy ``policies/`` and the named stack files (each edited by its callback)."""
    root = tmp_path / "repo"
    root.mkdir(parents=True)
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    for name, edit in stacks.items():
        doc = yaml.safe_load((REPO_ROOT / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))
        if edit is not None:
            edit(doc["config"][SPEC_KEY])
        (root / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False),
                                                  encoding="utf-8")
    return root


def secret_entry(spec: dict[str, Any], path: str) -> dict[str, Any]:
    return next(s for s in spec["static_secrets"] if s["path"] == path)


def analytics_secret(path: str, version: int) -> dict[str, Any]:
    """A repo-owned secret the analytics service can read (its policy covers the subtree)."""
    return {"mount": "secret", "path": path, "keys": ["TOKEN"], "version": version,
            "source": "generated", "rotation_interval_seconds": 30 * DAY,
            "consumers": ["analytics"]}


def seed(client: hvac.Client, path: str, versions: int, mount: str = "secret") -> None:
    """Write ``versions`` versions of ``mount/path`` with CAS (values are the canary)."""
    for n in range(versions):
        client.secrets.kv.v2.create_or_update_secret(
            path=path, secret={"VALUE": f"{CANARY}-{n}"}, cas=n, mount_point=mount)


def vault_time(text: str) -> datetime:
    """Parse a Vault timestamp as an aware UTC datetime."""
    value = parse_time(text)
    assert value is not None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert CANARY not in captured.out and CANARY not in captured.err
    return code, captured.out, captured.err


@pytest.fixture
def vault_env(monkeypatch: pytest.MonkeyPatch, openbao: Any) -> Any:
    """Point the default token variable at the fixture server; clear per-stack ones."""
    for name in ("VAULT_TOKEN_PROD", "VAULT_TOKEN_DR", "VAULT_TOKEN_STAGING",
                 "VAULT_TOKEN_LOCAL", "VAULT_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    return openbao


# --------------------------------------------------------------------------- drift


def test_drift_classifies_every_state_including_dr_lagging_prod(
    tmp_path: Path, vault_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def dr(spec: dict[str, Any]) -> None:
        assert secret_entry(spec, "services/execution/broker-api")["version"] == 2
        assert secret_entry(spec, "services/analytics/warehouse-hmac")["version"] == 2
        spec["static_secrets"] += [analytics_secret("services/analytics/reporting-key", 1),
                                   analytics_secret("services/analytics/never-applied", 1)]

    root = make_repo(tmp_path, {"prod": None, "dr": dr})
    client = vault_env.client()
    seed(client, "services/execution/broker-api", 2)  # declared 2 -> in sync
    seed(client, "services/analytics/warehouse-hmac", 1)  # declared 2 -> pending
    seed(client, "services/analytics/reporting-key", 2)  # declared 1 -> drifted
    seed(client, "services/execution/session-signing-key", 9)  # prod declares 9 -> in sync
    seed(client, "services/ingestion/market-data-feed", 2)  # prod declares 3 -> lagging
    # services/analytics/never-applied is not seeded -> missing

    code, out, err = run_cli(capsys, "drift", "--stack", "dr", "--repo", str(root),
                             "--address", vault_env.address, "--json")
    assert code == 1, err
    report = json.loads(out)  # stdout is exactly one JSON document
    assert report["ok"] is False
    states = {row["id"]: row["state"] for row in report["secrets"]}
    assert states == {
        "secret/services/execution/broker-api": "in_sync",
        "secret/services/analytics/warehouse-hmac": "pending",
        "secret/services/analytics/reporting-key": "drifted",
        "secret/services/analytics/never-applied": "missing",
        "secret/services/execution/session-signing-key": "in_sync",
        "secret/services/ingestion/market-data-feed": "lagging_prod",
    }
    assert report["summary"] == {"in_sync": 2, "pending": 1, "drifted": 1, "missing": 1,
                                 "lagging_prod": 1}
    rows = {row["id"]: row for row in report["secrets"]}
    feed = rows["secret/services/ingestion/market-data-feed"]
    assert (feed["declared_version"], feed["live_version"]) == (3, 2)
    assert feed["declared_in"] == "Pulumi.prod.yaml" and feed["mirror_of"] == "prod"
    assert rows["secret/services/execution/session-signing-key"]["declared_version"] == 9
    assert rows["secret/services/analytics/reporting-key"]["live_version"] == 2
    assert rows["secret/services/analytics/never-applied"]["live_version"] is None
    assert rows["secret/services/execution/broker-api"]["declared_in"] == "Pulumi.dr.yaml"
    assert {row["stack"] for row in report["secrets"]} == {"dr"}

    code, out, _ = run_cli(capsys, "drift", "--stack", "dr", "--repo", str(root),
                           "--address", vault_env.address)
    assert code == 1
    for needle in ("lagging_prod", "drifted", "pending", "missing",
                   "services/analytics/reporting-key", "drift FAIL"):
        assert needle in out


def test_drift_pending_alone_exits_zero_unless_fail_on_pending(
    tmp_path: Path, vault_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def local(spec: dict[str, Any]) -> None:
        secret_entry(spec, "services/execution/broker-api")["version"] = 2

    root = make_repo(tmp_path, {"local": local})
    client = vault_env.client()
    for path in ("services/execution/broker-api", "services/execution/session-signing-key",
                 "services/ingestion/market-data-feed", "services/analytics/warehouse-hmac"):
        seed(client, path, 1)

    base = ["drift", "--stack", "local", "--repo", str(root), "--address", vault_env.address,
            "--json"]
    code, out, _ = run_cli(capsys, *base)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True
    assert report["summary"]["pending"] == 1 and report["summary"]["in_sync"] == 3

    code, out, _ = run_cli(capsys, *base, "--fail-on-pending")
    assert code == 1 and json.loads(out)["ok"] is False


def test_drift_all_reads_each_stack_from_its_own_vault_with_its_own_token(
    tmp_path: Path, openbao: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dr_server = start_openbao(tmp_path / "dr-bao")
    try:
        def address(url: str) -> Edit:
            def edit(spec: dict[str, Any]) -> None:
                spec["vault"]["address"] = url
            return edit

        root = make_repo(tmp_path, {"prod": address(openbao.address),
                                    "dr": address(dr_server.address)})
        monkeypatch.delenv("VAULT_TOKEN", raising=False)
        monkeypatch.setenv("VAULT_TOKEN_PROD", openbao.root_token)
        monkeypatch.setenv("VAULT_TOKEN_DR", dr_server.root_token)
        prod_versions = {"services/execution/broker-api": 4,
                         "services/execution/session-signing-key": 9,
                         "services/ingestion/market-data-feed": 3,
                         "services/analytics/warehouse-hmac": 2}
        dr_versions = {"services/execution/broker-api": 2,
                       "services/execution/session-signing-key": 9,
                       "services/ingestion/market-data-feed": 3,
                       "services/analytics/warehouse-hmac": 2}
        for path, n in prod_versions.items():
            seed(openbao.client(), path, n)
        for path, n in dr_versions.items():
            seed(dr_server.client(), path, n)

        code, out, err = run_cli(capsys, "drift", "--all", "--repo", str(root), "--json")
        assert code == 0, err
        report = json.loads(out)
        assert [s["stack"] for s in report["stacks"]] == ["dr", "prod"]
        assert report["summary"]["in_sync"] == 8
        for row in report["secrets"]:
            expected = openbao.address if row["stack"] == "prod" else dr_server.address
            assert row["address"] == expected
        mirrors = [r for r in report["secrets"] if r["mirror_of"] == "prod"]
        assert {r["id"]: r["origin_live_version"] for r in mirrors} == {
            "secret/services/execution/session-signing-key": 9,
            "secret/services/ingestion/market-data-feed": 3,
        }

        # prod moves on (applied there), dr has not caught up yet: dr lags prod.
        def prod_bumped(spec: dict[str, Any]) -> None:
            address(openbao.address)(spec)
            secret_entry(spec, "services/execution/session-signing-key")["version"] = 10

        root2 = make_repo(tmp_path / "second", {"prod": prod_bumped,
                                                "dr": address(dr_server.address)})
        openbao.client().secrets.kv.v2.create_or_update_secret(
            path="services/execution/session-signing-key", secret={"VALUE": CANARY}, cas=9,
            mount_point="secret")
        code, out, _ = run_cli(capsys, "drift", "--all", "--repo", str(root2), "--json")
        assert code == 1
        rows = {(r["stack"], r["id"]): r for r in json.loads(out)["secrets"]}
        lag = rows[("dr", "secret/services/execution/session-signing-key")]
        assert lag["state"] == "lagging_prod"
        assert (lag["declared_version"], lag["live_version"], lag["origin_live_version"]) == (
            10, 9, 10)
        assert rows[("prod", "secret/services/execution/session-signing-key")]["state"] == (
            "in_sync")
    finally:
        dr_server.stop()


def test_drift_mirror_not_published_by_prod_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    refused_url: Callable[[], str],
) -> None:
    def prod(spec: dict[str, Any]) -> None:
        del secret_entry(spec, "services/ingestion/market-data-feed")["mirror_to_dr"]

    root = make_repo(tmp_path, {"prod": prod, "dr": None})
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    code, out, err = run_cli(capsys, "drift", "--stack", "dr", "--repo", str(root), "--json",
                             "--address", refused_url())
    assert code == 2
    assert "Pulumi.prod.yaml" in err and "market-data-feed" in err
    assert json.loads(out)["exit_code"] == 2


def test_drift_without_token_is_bad_input_and_unreachable_vault_is_exit_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    refused_url: Callable[[], str],
) -> None:
    for name in ("VAULT_TOKEN", "VAULT_TOKEN_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    closed = refused_url()
    code, _, err = run_cli(capsys, "drift", "--stack", "local", "--repo", str(REPO_ROOT),
                           "--address", closed)
    assert code == 2 and "VAULT_TOKEN" in err

    monkeypatch.setenv("VAULT_TOKEN", "some-token")
    code, out, err = run_cli(capsys, "drift", "--stack", "local", "--repo", str(REPO_ROOT),
                             "--address", closed, "--json")
    assert code == 3 and closed in err
    assert json.loads(out)["exit_code"] == 3


# ----------------------------------------------------------------------------- due


def test_due_orders_soonest_first_and_flags_overdue(
    tmp_path: Path, vault_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(tmp_path, {"prod": None, "dr": None})
    client = vault_env.client()
    # dr: broker-api 90d, warehouse-hmac 180d; the signing-key mirror inherits prod's 30d.
    seed(client, "services/analytics/warehouse-hmac", 1)
    seed(client, "services/execution/broker-api", 2)
    seed(client, "services/execution/session-signing-key", 1)
    # services/ingestion/market-data-feed (mirror, 90d) is missing.
    base = ["due", "--stack", "dr", "--repo", str(root), "--address", vault_env.address]
    wall = datetime.now(UTC)

    later = (wall + timedelta(days=100)).isoformat()
    code, out, err = run_cli(capsys, *base, "--now", later, "--json")
    assert code == 1, err
    report = json.loads(out)
    order = [(r["id"].rsplit("/", 1)[1], r["state"]) for r in report["secrets"]]
    assert order == [("session-signing-key", "overdue"), ("broker-api", "overdue"),
                     ("warehouse-hmac", "ok"), ("market-data-feed", "missing")]
    rows = {r["id"].rsplit("/", 1)[1]: r for r in report["secrets"]}
    signing = rows["session-signing-key"]
    assert signing["interval_seconds"] == 30 * DAY and signing["interval_from"] == (
        "Pulumi.prod.yaml")
    assert 69 * DAY < signing["overdue_by_seconds"] <= 70 * DAY
    assert 9 * DAY < rows["broker-api"]["overdue_by_seconds"] <= 10 * DAY
    assert 79 * DAY < rows["warehouse-hmac"]["due_in_seconds"] <= 80 * DAY
    assert rows["broker-api"]["live_version"] == 2
    rotated = datetime.fromisoformat(signing["last_rotated"])
    assert datetime.fromisoformat(signing["due_at"]) == rotated + timedelta(days=30)
    assert abs((rotated - wall).total_seconds()) < 60
    assert rows["market-data-feed"]["last_rotated"] is None
    assert report["summary"] == {"overdue": 2, "ok": 1, "missing": 1, "no_interval": 0}

    soon = (wall + timedelta(days=1)).isoformat()
    code, out, _ = run_cli(capsys, *base, "--now", soon, "--json")
    assert code == 0
    assert [(r["id"].rsplit("/", 1)[1], r["state"]) for r in json.loads(out)["secrets"]] == [
        ("session-signing-key", "ok"), ("broker-api", "ok"), ("warehouse-hmac", "ok"),
        ("market-data-feed", "missing")]

    code, out, _ = run_cli(capsys, *base, "--now", later)
    assert code == 1
    positions = [out.index(name) for name in ("session-signing-key", "broker-api",
                                              "warehouse-hmac", "market-data-feed")]
    assert positions == sorted(positions)
    assert "OVERDUE by 69d" in out or "OVERDUE by 70d" in out
    assert "missing: not in Vault" in out and "due FAIL" in out


def test_due_ignores_metadata_only_writes(
    tmp_path: Path, vault_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_repo(tmp_path, {"local": None})
    client = vault_env.client()
    path = "services/execution/session-signing-key"  # local: 30d interval
    seed(client, path, 1)
    time.sleep(0.4)
    client.secrets.kv.v2.update_metadata(path=path, mount_point="secret",
                                         custom_metadata={"owner": "execution"})
    meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point="secret")["data"]
    created = vault_time(meta["versions"]["1"]["created_time"])
    updated = vault_time(meta["updated_time"])
    assert updated > created
    # Past the version's due date, before updated_time's would-be due date.
    now = created + timedelta(days=30) + (updated - created) / 2
    code, out, _ = run_cli(capsys, "due", "--stack", "local", "--repo", str(root),
                           "--address", vault_env.address, "--now", now.isoformat(), "--json")
    assert code == 1
    row = next(r for r in json.loads(out)["secrets"] if r["path"] == path)
    assert row["state"] == "overdue"
    assert datetime.fromisoformat(row["last_rotated"]) == created


def test_due_rejects_a_bad_now(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "due", "--stack", "local", "--repo", str(REPO_ROOT),
                             "--now", "next tuesday", "--json")
    assert code == 2 and "--now" in err
    assert json.loads(out)["ok"] is False


# ------------------------------------------------------------ terminals, pipes, --all


def _dr_repo_with_every_state(tmp_path: Path, client: hvac.Client) -> Path:
    def dr(spec: dict[str, Any]) -> None:
        spec["static_secrets"] += [analytics_secret("services/analytics/reporting-key", 1),
                                   analytics_secret("services/analytics/never-applied", 1)]

    root = make_repo(tmp_path, {"prod": None, "dr": dr})
    seed(client, "services/execution/broker-api", 2)
    seed(client, "services/analytics/warehouse-hmac", 1)
    seed(client, "services/analytics/reporting-key", 2)
    seed(client, "services/execution/session-signing-key", 9)
    seed(client, "services/ingestion/market-data-feed", 2)
    return root


@pytest.mark.parametrize("command", ["drift", "due"])
def test_at_80_columns_every_row_keeps_stack_version_and_status(
    command: str, tmp_path: Path, vault_env: Any, capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.rotation.terminal_support import run_on_terminal

    root = _dr_repo_with_every_state(tmp_path, vault_env.client())
    argv = [command, "--stack", "dr", "--repo", str(root), "--address", vault_env.address]
    later = ["--now", (datetime.now(UTC) + timedelta(days=100)).isoformat()]
    if command == "due":
        argv += later
    code, out, _ = run_cli(capsys, *argv, "--json")
    rows = json.loads(out)["secrets"]
    assert len(rows) == 6

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code_tty, screen = run_on_terminal(argv, env=env, cwd=root, columns=80)
    assert code_tty == code == 1, screen
    assert CANARY not in screen
    lines = screen.splitlines()
    assert max(len(line) for line in lines) <= 80, screen
    assert "┃" not in screen and "│" not in screen
    for row in rows:
        name = row["id"].rsplit("/", 1)[1]
        line = next(line for line in lines if name in line and line.startswith(row["stack"]))
        version = row["live_version"] if command == "due" else row["declared_version"]
        status = row["state"] if command == "drift" else (
            "OVERDUE" if row["state"] == "overdue" else
            "due in" if row["state"] == "ok" else row["state"])
        assert str(version if version is not None else "-") in line.split(), (line, row)
        assert status in line, (line, row)

    # Off a terminal: plain rows, one per secret, with every column, nothing cut.
    code_pipe, piped, _ = run_cli(capsys, *argv)
    assert code_pipe == 1
    plain = piped.splitlines()
    assert plain[0].split()[:2] == ["STACK", "SECRET"]
    for row in rows:
        matches = [line for line in plain if line.split()[:2] == [row["stack"], row["id"]]]
        assert len(matches) == 1, (row["id"], piped)
        assert (row["state"] in matches[0]) if command == "drift" else (
            row["note"] in matches[0])


def test_all_reports_the_reachable_stacks_and_names_the_unreachable_one(
    tmp_path: Path, openbao: Any, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], refused_url: Callable[[], str],
) -> None:
    closed = refused_url()

    def address(url: str) -> Edit:
        def edit(spec: dict[str, Any]) -> None:
            spec["vault"]["address"] = url
        return edit

    root = make_repo(tmp_path, {"prod": address(openbao.address), "dr": address(closed)})
    for name in ("VAULT_ADDR", "BAO_ADDR", "VAULT_TOKEN_PROD", "VAULT_TOKEN_DR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    for path, n in {"services/execution/broker-api": 4,
                    "services/execution/session-signing-key": 9,
                    "services/ingestion/market-data-feed": 3,
                    "services/analytics/warehouse-hmac": 2}.items():
        seed(openbao.client(), path, n)

    for command in ("drift", "due"):
        code, out, err = run_cli(capsys, command, "--all", "--repo", str(root), "--json")
        assert code == 3, err
        report = json.loads(out)
        assert report["ok"] is False
        assert {r["stack"] for r in report["secrets"]} == {"prod"}
        assert len(report["secrets"]) == 4
        assert [(u["stack"], u["address"], u["address_from"]) for u in report["unreachable"]
                ] == [("dr", closed, "Pulumi.dr.yaml vault.address")]
        assert {s["stack"]: s["reachable"] for s in report["stacks"]} == {"dr": False,
                                                                          "prod": True}
        assert "dr: cannot reach Vault at " + closed in err

        code, out, _ = run_cli(capsys, command, "--all", "--repo", str(root))
        assert code == 3
        assert "UNREACHABLE dr" in out and "1 stack(s) unreachable" in out
        assert "session-signing-key" in out
