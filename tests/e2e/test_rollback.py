"""A bad rotation rolled back through ``pulumi up --stack local`` on the real engine.

The local stack (the workspace and OpenBao of the credential-rotation e2e
module's ``stack`` fixture) rotates the generated warehouse HMAC key (v1 ->
v2, the "bad" rotation), then ``rollback --to-version 1``: the plan and the
gate show a rollback, preflight finds version 1 in Vault's history, the
preview changes only the secret, the apply writes v3 with ``cas = 2`` and
version 1's data (read from Vault's history by the program), verify proves
it by digest and record marks it. A provided secret (the broker key) is
rolled back the same way, with no new value. A second rollback with an out-of-band
write in between is refused by preflight and fails the apply like any
rotation. No version's value appears in any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import hvac
import pytest

from tests.e2e.test_credential_rotations import rotation_cli, stack
from tools.localenv import Workspace

__all__ = ["stack"]  # the module-scoped fixture, reused (one workspace and OpenBao here)

pytestmark = pytest.mark.e2e

HMAC = "secret/services/analytics/warehouse-hmac"
BROKER = "secret/services/execution/broker-api"
PATH = "services/analytics/warehouse-hmac"
CANARY = "CANARY-rollback-out-of-band-9b1f"
KEY = "value-secret-services-analytics-warehouse-hmac-hmac_key"
KV_WRITE_URN_NAME = "secret-secret-services-analytics-warehouse-hmac"


def commit(ws: Workspace, message: str) -> None:
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", message], check=True)


def data(client: hvac.Client, version: int | None = None, path: str = PATH) -> dict[str, str]:
    """Read a version's data from Vault (for comparing inside the test, never printed)."""
    answer = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", version=version, raise_on_deleted_version=True)
    return dict(answer["data"]["data"])


def changed_steps(ws: Workspace) -> dict[str, str]:
    preview = json.loads(ws.pulumi("preview", "--json", "--diff").stdout)
    return {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"]
            if s["op"] not in {"same", "read"}}


def test_a_bad_rotation_is_rolled_back_as_a_new_version_with_cas(
    stack: tuple[Workspace, Any], tmp_path: Path
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    good = data(client, 1)
    assert rotation_cli(ws, "bump", "--stack", "local", HMAC, "--reason", "quarterly"
                        ).returncode == 0
    commit(ws, "rotate warehouse hmac")
    ws.pulumi("up", "--yes", "--skip-preview")
    bad = data(client, 2)
    assert bad != good

    rollback = rotation_cli(ws, "rollback", "--stack", "local", HMAC, "--to-version", "1",
                            "--reason", "analytics rejects the new key", "--ticket", "INC-77")
    assert rollback.returncode == 0, rollback.stderr
    commit(ws, "roll back warehouse hmac to version 1")
    plan = rotation_cli(ws, "plan", "--base", "HEAD~1")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"`{HMAC}` **rollback: restores version 1** | 2 → 3 | 2 |" in plan.stdout
    # The workspace's own files (its passphrase ciphertexts) are not the repository's, so
    # only the gate's rotation-plan check is asked about here (the unit test runs it whole).
    gate = rotation_cli(ws, "gate", "--json", "--base", "HEAD~1")
    checks = {c["name"]: c for c in json.loads(gate.stdout)["checks"]}
    assert checks["rotation-plan"]["ok"], checks["rotation-plan"]
    preflight = rotation_cli(ws, "preflight", "--json", "--stack", "local", "--base", "HEAD~1",
                             "--skip-lock-check", "--server-dir", str(server.workdir))
    assert preflight.returncode == 0, preflight.stdout + preflight.stderr
    # The generated value keeps its state: only the KV write changes.
    assert changed_steps(ws) == {KV_WRITE_URN_NAME: "update"}
    ws.pulumi("up", "--yes", "--skip-preview")
    meta = client.secrets.kv.v2.read_secret_metadata(path=PATH, mount_point="secret")["data"]
    assert meta["current_version"] == 3
    assert data(client, 3) == good
    assert changed_steps(ws) == {}  # the rollback, once applied, is in sync

    audit_log = str(server.workdir / ".local" / "openbao" / "audit.log")
    verify = rotation_cli(ws, "verify", "--json", "--stack", "local", "--base", "HEAD~1",
                          "--audit-log", audit_log)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, report
    assert report["restored"] == {HMAC: {"version": 3, "restores": 1, "data_matches": True}}
    evidence = tmp_path / "verify.json"
    evidence.write_text(verify.stdout)
    record = rotation_cli(ws, "record", "--stack", "local", "--base", "HEAD~1", "--operator",
                          "E2E", "--date", "2026-12-01", "--evidence", str(evidence))
    assert record.returncode == 0, record.stderr
    text = (ws.root / "reports/security/secret-rotations/2026-12-01.md").read_text()
    assert f"| `{HMAC}` (rollback: data of v1, digest verified) | 2 → 3 | 3 |" in text
    assert f"rollback: `{HMAC}` v3 data equals v1's" in text
    outputs = "".join(p.stdout + p.stderr for p in (rollback, plan, gate, preflight, verify,
                                                     record)) + text
    for value in (*good.values(), *bad.values()):
        assert value not in outputs


def test_a_provided_secret_is_rolled_back_without_a_new_value(
    stack: tuple[Workspace, Any]
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()

    def broker(version: int) -> dict[str, str]:
        return data(client, version, "services/execution/broker-api")

    good = broker(1)
    bad = {"API_KEY": f"{CANARY}-key", "API_SECRET": f"{CANARY}-secret"}
    bump = subprocess.run(
        [sys.executable, "-m", "rotation", "bump", "--stack", "local", BROKER, "--value-stdin"],
        input=json.dumps(bad), capture_output=True, text=True, cwd=ws.root, env=ws.env(),
        check=False)
    assert bump.returncode == 0, bump.stderr
    commit(ws, "rotate the broker key")
    ws.pulumi("up", "--yes", "--skip-preview")
    assert broker(2) == bad
    rollback = rotation_cli(ws, "rollback", "--stack", "local", BROKER, "--to-version", "1")
    assert rollback.returncode == 0, rollback.stderr
    commit(ws, "roll back the broker key")
    plan = rotation_cli(ws, "plan", "--json", "--base", "HEAD~1")
    assert json.loads(plan.stdout)["findings"] == []  # no new ciphertext needed, none given
    assert changed_steps(ws) == {"secret-secret-services-execution-broker-api": "update"}
    ws.pulumi("up", "--yes", "--skip-preview")
    assert broker(3) == good
    audit_log = str(server.workdir / ".local" / "openbao" / "audit.log")
    verify = rotation_cli(ws, "verify", "--json", "--stack", "local", "--base", "HEAD~1",
                          "--audit-log", audit_log)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["restored"][BROKER]["data_matches"] is True
    for out in (bump, rollback, plan, verify):
        assert CANARY not in out.stdout + out.stderr
        assert all(v not in out.stdout + out.stderr for v in good.values())


def test_an_out_of_band_write_fails_the_rollback_like_any_rotation(
    stack: tuple[Workspace, Any]
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    assert rotation_cli(ws, "rollback", "--stack", "local", HMAC, "--to-version", "2"
                        ).returncode == 0
    commit(ws, "roll back to version 2")
    client.secrets.kv.v2.create_or_update_secret(path=PATH, secret={"HMAC_KEY": CANARY},
                                                 cas=3, mount_point="secret")
    preflight = rotation_cli(ws, "preflight", "--json", "--stack", "local", "--base", "HEAD~1",
                             "--skip-lock-check", "--server-dir", str(server.workdir))
    assert preflight.returncode == 1
    assert any(HMAC in f for f in json.loads(preflight.stdout)["failures"])
    proc = ws.pulumi("up", "--yes", "--skip-preview", check=False)
    assert proc.returncode != 0
    assert "check-and-set" in proc.stdout + proc.stderr
    assert CANARY not in proc.stdout + proc.stderr + preflight.stdout + preflight.stderr
    meta = client.secrets.kv.v2.read_secret_metadata(path=PATH, mount_point="secret")["data"]
    assert meta["current_version"] == 4 and data(client) == {"HMAC_KEY": CANARY}


def test_preflight_refuses_a_rollback_to_a_destroyed_version(
    stack: tuple[Workspace, Any]
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    subprocess.run(["git", "-C", str(ws.root), "reset", "-q", "--hard", "HEAD~1"], check=True)
    client.secrets.kv.v2.destroy_secret_versions(path=PATH, versions=[1], mount_point="secret")
    client.secrets.kv.v2.delete_secret_versions(path=PATH, versions=[2], mount_point="secret")
    for version, word in (("1", "destroyed"), ("2", "deleted")):
        # (Live is 4 after the out-of-band write, so preflight also names that conflict.)
        assert rotation_cli(ws, "rollback", "--stack", "local", HMAC, "--to-version", version
                            ).returncode == 0
        preflight = rotation_cli(ws, "preflight", "--json", "--stack", "local", "--secret",
                                 HMAC, "--skip-lock-check", "--server-dir", str(server.workdir))
        assert preflight.returncode == 1
        assert any(f"version {version} is {word}" in f
                   for f in json.loads(preflight.stdout)["failures"]), preflight.stdout
        subprocess.run(["git", "-C", str(ws.root), "checkout", "-q", "--", "."], check=True)
