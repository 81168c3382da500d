"""Every non-KV credential class rotated through ``pulumi up --stack local`` on the real engine.

One workspace of the local stack against a fresh OpenBao and the session's
PostgreSQL: the four bumps (JWT key, root credential, static role, lease
generation) are one commit, the preview shows exactly the four rotation
Endpoints, the apply rotates each once, ``verify`` proves them, and a second
apply or preview finds nothing to do. A later connection change after the
root rotation still applies (the seed is not resent).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from kernel.spec import load_stack_file
from tests.e2e.conftest import git_init, local_stack
from tests.rotation.dynamic_support import can_login, lease_live
from tools.localenv import (
    REPO_ROOT,
    VAULT_ROOT_ROLE,
    Workspace,
)

JWT_KEY = "identity/oidc/key/tradepulse-adapters"
ROOT = "database/config/tradepulse-postgres"
STATIC = "database/static-roles/execution-settlement"
LEASES = "database/roles/tradepulse-execution"
ENDPOINT = "vault:generic/endpoint:Endpoint"


@pytest.fixture(scope="module")
def stack(engine: str, tmp_path_factory: pytest.TempPathFactory,
          postgres: Any) -> Iterator[tuple[Workspace, Any]]:
    """The local stack applied once against a fresh OpenBao."""
    with local_stack(tmp_path_factory.mktemp("credential-rotations"), postgres) as (ws, server, _):
        git_init(ws.root)
        ws.pulumi("up", "--yes", "--skip-preview")
        yield ws, server


def rotation_cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args, "--repo", str(ws.root)],
                          capture_output=True, text=True, cwd=ws.root, env=ws.env(),
                          check=False)


def changed_steps(ws: Workspace) -> dict[str, tuple[str, str]]:
    preview = json.loads(ws.pulumi("preview", "--json", "--diff").stdout)
    return {s["urn"].rsplit("::", 1)[1]: (s["op"], s["urn"].split("::")[-2].rsplit("$", 1)[-1])
            for s in preview["steps"] if s["op"] not in {"same", "read"}}


def jwks(client: hvac.Client) -> set[str]:
    return {k["kid"] for k in client.adapter.get("/v1/identity/oidc/.well-known/keys")["keys"]}


def test_every_credential_class_rotates_once_through_pulumi_up(
    stack: tuple[Workspace, Any], postgres: Any, tmp_path: Any
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    assert ws.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    seed = ws.pulumi("config", "get", "tradepulse-vault:databaseRootPassword").stdout.strip()
    assert can_login(postgres, VAULT_ROOT_ROLE, seed), "version 1: Vault uses the seed"
    static_old = client.read("database/static-creds/execution-settlement")["data"]
    assert can_login(postgres, "tp_settlement", static_old["password"])
    stale = [client.secrets.database.generate_credentials("tradepulse-execution",
                                                          mount_point="database")["lease_id"]
             for _ in range(2)]

    for credential_id in (JWT_KEY, ROOT, STATIC, LEASES):
        bump = rotation_cli(ws, "bump", "--stack", "local", credential_id, "--allow-dirty")
        assert bump.returncode == 0, bump.stderr
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", "rotate every class"],
                   check=True)
    plan = rotation_cli(ws, "plan", "--base", "HEAD~1", "--head", "HEAD")
    assert plan.returncode == 0, plan.stderr
    for kind in ("jwt-key", "db-root", "db-static-role", "db-lease-generation"):
        assert f"| local | {kind} |" in plan.stdout
    changed = changed_steps(ws)
    assert {op for op, _ in changed.values()} == {"create"}
    assert {typ for _, typ in changed.values()} == {ENDPOINT}, changed
    assert len(changed) == 4, changed

    preflight = rotation_cli(ws, "preflight", "--json", "--stack", "local", "--skip-lock-check")
    assert preflight.returncode == 0, preflight.stdout + preflight.stderr
    before_file = tmp_path / "preflight.json"
    before_file.write_text(preflight.stdout)
    kids_before = jwks(client)

    ws.pulumi("up", "--yes", "--skip-preview")

    kids_after = jwks(client)
    assert kids_before < kids_after and len(kids_after - kids_before) == 1
    assert not can_login(postgres, VAULT_ROOT_ROLE, seed), "rotate-root: the seed is refused"
    fresh = client.secrets.database.generate_credentials("tradepulse-ingestion",
                                                         mount_point="database")["data"]
    assert can_login(postgres, fresh["username"], fresh["password"])
    static_new = client.read("database/static-creds/execution-settlement")["data"]
    assert not can_login(postgres, "tp_settlement", static_old["password"])
    assert can_login(postgres, "tp_settlement", static_new["password"])
    assert not any(lease_live(client, lease) for lease in stale)

    audit_log = str(server.workdir / ".local" / "openbao" / "audit.log")
    # rotate-root was sent only once the engine's other rotations had been answered: sent
    # beside them, OpenBao fails them (README, "The root rotation goes last").
    entries = [json.loads(line) for line in Path(audit_log).read_text().splitlines()]

    def lines(kind: str, path: str) -> list[int]:
        return [i for i, e in enumerate(entries)
                if e.get("type") == kind and e["request"]["path"] == path]

    (root_sent,) = lines("request", "database/rotate-root/tradepulse-postgres")
    answered = [*lines("response", "database/rotate-role/execution-settlement"),
                *lines("response", "sys/leases/revoke-prefix/database/creds/tradepulse-execution")]
    assert len(answered) == 2 and max(answered) < root_sent, (answered, root_sent)
    verify = rotation_cli(ws, "verify", "--json", "--stack", "local", "--audit-log", audit_log,
                          "--before", str(before_file))
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, report["failures"]
    assert set(report["credentials"]) == {JWT_KEY, ROOT, STATIC, LEASES}
    for secret in (seed, static_old["password"], static_new["password"], fresh["password"]):
        assert secret not in verify.stdout + verify.stderr + preflight.stdout + plan.stdout

    # No diff after the apply, and a retried apply rotates nothing again.
    assert ws.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    ws.pulumi("up", "--yes", "--skip-preview")
    assert jwks(client) == kids_after
    assert client.read("database/static-creds/execution-settlement")["data"]["password"] == (
        static_new["password"])

    # The next bump of one class is an update of its Endpoint only.
    bump = rotation_cli(ws, "bump", "--stack", "local", STATIC, "--allow-dirty")
    assert bump.returncode == 0, bump.stderr
    changed = changed_steps(ws)
    assert list(changed.values()) == [("update", ENDPOINT)], changed
    ws.pulumi("up", "--yes", "--skip-preview")
    third = client.read("database/static-creds/execution-settlement")["data"]["password"]
    assert third != static_new["password"] and can_login(postgres, "tp_settlement", third)

    # A connection change after rotate-root applies: the provider does not resend the seed.
    text = ws.stack_file.read_text()
    assert "max_open_connections: 2" in text
    ws.stack_file.write_text(text.replace("max_open_connections: 2", "max_open_connections: 3"))
    ws.pulumi("up", "--yes", "--skip-preview")
    again = client.secrets.database.generate_credentials("tradepulse-analytics",
                                                         mount_point="database")["data"]
    assert can_login(postgres, again["username"], again["password"])
    assert not can_login(postgres, VAULT_ROOT_ROLE, seed)


def test_a_retried_apply_rotates_at_most_once(stack: tuple[Workspace, Any]) -> None:
    """An apply that fails elsewhere (a CAS conflict) and is retried writes the rotation once."""
    ws, server = stack
    client: hvac.Client = server.client()
    hmac = "services/analytics/warehouse-hmac"
    live = client.secrets.kv.v2.read_secret_metadata(path=hmac, mount_point="secret")
    current = live["data"]["current_version"]
    client.secrets.kv.v2.create_or_update_secret(path=hmac, secret={"HMAC_KEY": "out-of-band"},
                                                 cas=current, mount_point="secret")
    for credential_id in (STATIC, f"secret/{hmac}"):
        bump = rotation_cli(ws, "bump", "--stack", "local", credential_id, "--allow-dirty")
        assert bump.returncode == 0, bump.stderr
    declared = load_stack_file(ws.stack_file, policy_dir=REPO_ROOT / "policies" / "acl")
    assert declared.database is not None
    static_version = declared.database.static_roles[0].version
    failed = ws.pulumi("up", "--yes", "--skip-preview", check=False)
    assert failed.returncode != 0 and "check-and-set" in failed.stdout + failed.stderr
    # Merge the out-of-band write as the runbook says: declare the next version, retry. The
    # first bump is committed first: bump refuses a second bump of an uncommitted one.
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", "rotate static role, hmac"],
                   check=True)
    bump = rotation_cli(ws, "bump", "--stack", "local", f"secret/{hmac}", "--allow-dirty")
    assert bump.returncode == 0, bump.stderr
    ws.pulumi("up", "--yes", "--skip-preview")
    ws.pulumi("up", "--yes", "--skip-preview")
    assert ws.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    log = (server.workdir / ".local" / "openbao" / "audit.log").read_text().splitlines()
    writes = [e for e in map(json.loads, log) if e.get("type") == "response"
              and e["request"]["path"] == "database/rotate-role/execution-settlement"
              and (e["request"].get("data") or {}).get("tradepulse_version") == static_version]
    assert len(writes) == 1, f"rotate-role v{static_version} written {len(writes)} times"
