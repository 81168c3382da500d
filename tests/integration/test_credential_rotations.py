"""Each non-KV credential rotation on real OpenBao and PostgreSQL: bump, preflight, apply, verify.

Vault is configured here with hvac as the local stack declares it (tests/e2e
does the same through the real engine), and the apply-time rotation is the
exact write the program's ``vault.generic.Endpoint`` makes: the credential's
``action_path`` with :func:`kernel.spec.credentials.rotation_payload`. Each test
then proves the rotation itself (JWKS key ids, logins refused and accepted,
leases gone) and that ``verify`` proves it too, with nothing secret printed.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import hvac
import pytest

from kernel import paths
from kernel.spec import EnvironmentSpec, load_stack_file
from kernel.spec.credentials import Credential, credential, credentials, rotation_payload
from rotation.cli import main
from rotation.credential_checks import parse_time
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi
from tests.rotation.commands.test_secrets_issue_dynamic import Watcher, read_doc, start_cli
from tests.rotation.dynamic_support import can_login, live_leases, wait_until
from tools.localenv import prepare_database

pytestmark = pytest.mark.integration

JWT_KEY = "identity/oidc/key/tradepulse-adapters"
ROOT = "database/config/tradepulse-postgres"
STATIC = "database/static-roles/execution-settlement"
LEASES = "database/roles/tradepulse-execution"


def configure_like_the_program(client: hvac.Client, spec: EnvironmentSpec, postgres: Any,
                               *, dynamic_ttl: tuple[int, int] | None = None) -> str:
    """Declare the local stack's database engine, static role and JWT key; return the seed."""
    db = spec.database
    assert db is not None
    root_user, seed = prepare_database(spec, postgres)
    client.sys.enable_secrets_engine("database", path=db.mount)
    client.secrets.database.configure(
        name=db.connection.name, plugin_name="postgresql-database-plugin",
        connection_url=postgres.connection_url_template(), username=root_user, password=seed,
        allowed_roles=[r.name for r in db.roles] + [r.name for r in db.static_roles],
        mount_point=db.mount, verify_connection=True)
    for role in db.roles:
        ttl, max_ttl = dynamic_ttl or (role.default_ttl_seconds, role.max_ttl_seconds)
        client.secrets.database.create_role(
            name=role.name, db_name=db.connection.name,
            creation_statements=list(role.creation_statements),
            revocation_statements=list(role.revocation_statements),
            default_ttl=ttl, max_ttl=max_ttl, mount_point=db.mount)
    for static in db.static_roles:
        client.write(f"{db.mount}/static-roles/{static.name}", db_name=db.connection.name,
                     username=static.username, rotation_period=static.rotation_period_seconds,
                     rotation_statements=list(static.rotation_statements))
    for key in spec.jwt_issuer_keys:
        client.write(f"identity/oidc/key/{key.name}", algorithm=key.algorithm,
                     rotation_period=key.rotation_period_seconds,
                     verification_ttl=key.verification_ttl_seconds)
        client.write(f"identity/oidc/role/{key.name}", key=key.name, ttl=3600)
    return seed


def apply_rotation(client: hvac.Client, cred: Credential) -> None:
    """The write pulumi up makes when the version changed (infra.components.rotation_action)."""
    extra = {"sync": True} if cred.kind == "db-lease-generation" else {}
    client.write_data(cred.action_path, data={**extra, **rotation_payload(cred.version)})


@pytest.fixture
def local(openbao: Any, postgres: Any, stack_repo: Path,
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=5, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local")
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    spec = load_stack_file(paths.stack_file("local", stack_repo))
    return {"server": openbao, "client": client, "spec": spec, "root": stack_repo}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main([*argv[:1], "--json", *argv[1:]])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.out + captured.err


def common(local: dict[str, Any]) -> list[str]:
    return ["--stack", "local", "--repo", str(local["root"]), "--address",
            local["server"].address, "--base", "HEAD"]


def bump_preflight_apply(
    local: dict[str, Any], capsys: pytest.CaptureFixture[str], credential_id: str, tmp: Path
) -> tuple[Credential, Path, dict[str, Any]]:
    """Bump in the working tree, run preflight (saved for --before), apply the rotation."""
    assert main(["bump", "--stack", "local", credential_id, "--repo", str(local["root"])]) == 0
    capsys.readouterr()
    spec = load_stack_file(paths.stack_file("local", local["root"]))
    cred = credential(spec, credential_id)
    assert cred is not None and cred.version == 2
    code, pre, _ = cli(capsys, "preflight", *common(local), "--skip-lock-check")
    assert code == 0, pre["failures"]
    row = next(r for r in pre["credentials"] if r["id"] == credential_id)
    assert row["apply_path"] == cred.action_path and "root" in row["capabilities"]
    before = tmp / "preflight.json"
    before.write_text(json.dumps(pre))
    apply_rotation(local["client"], cred)
    return cred, before, row["before"]


def verify(local: dict[str, Any], capsys: pytest.CaptureFixture[str],
           before: Path | None) -> tuple[int, dict[str, Any], str]:
    audit = str(local["server"].workdir / ".local" / "openbao" / "audit.log")
    extra = ["--before", str(before)] if before is not None else []
    return cli(capsys, "verify", *common(local), "--audit-log", audit, *extra)


def test_jwt_issuer_key_rotation_publishes_a_new_key_id_and_keeps_the_previous(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configure_like_the_program(local["client"], local["spec"], postgres)
    cred, before_file, before = bump_preflight_apply(local, capsys, JWT_KEY, tmp_path)
    kids_before = set(before["jwks_kids"])
    assert kids_before, "the issuer role publishes the key before any rotation"
    body = local["client"].adapter.get("/v1/identity/oidc/.well-known/keys")
    kids_after = {k["kid"] for k in body["keys"]}
    assert kids_before < kids_after and len(kids_after - kids_before) == 1
    code, result, _ = verify(local, capsys, before_file)
    assert code == 0, result["failures"]
    evidence = result["credentials"][JWT_KEY]
    assert evidence["new_kids"] == sorted(kids_after - kids_before)
    assert evidence["kept_kids"] == sorted(kids_before)
    assert evidence["audit"]["path"] == cred.action_path
    # Without what preflight saw, "new" cannot be observed: verify says so and fails.
    code, result, _ = verify(local, capsys, None)
    assert code == 1 and any("cannot tell a new key id" in f for f in result["failures"])


def test_root_rotation_hides_the_seed_and_the_engine_still_issues_working_logins(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client, spec = local["client"], local["spec"]
    seed = configure_like_the_program(client, spec, postgres)
    assert can_login(postgres, "tp_vault_root", seed)
    bump_preflight_apply(local, capsys, ROOT, tmp_path)
    assert not can_login(postgres, "tp_vault_root", seed), "after rotate-root only Vault knows it"
    creds = client.secrets.database.generate_credentials("tradepulse-ingestion",
                                                         mount_point="database")
    assert can_login(postgres, creds["data"]["username"], creds["data"]["password"])
    # A later apply that changes the connection sends no password (the provider resends it
    # only when the config secret changes): Vault keeps the rotated one.
    client.write("database/config/tradepulse-postgres",
                 plugin_name="postgresql-database-plugin",
                 connection_url=postgres.connection_url_template(), username="tp_vault_root",
                 allowed_roles=["tradepulse-execution", "tradepulse-ingestion",
                                "tradepulse-analytics", "execution-settlement"],
                 verify_connection=True)
    again = client.secrets.database.generate_credentials("tradepulse-analytics",
                                                         mount_point="database")
    assert can_login(postgres, again["data"]["username"], again["data"]["password"])
    code, result, printed = verify(local, capsys, tmp_path / "preflight.json")
    assert code == 0, result["failures"]
    assert result["credentials"][ROOT]["issued"]["revoked"] is True
    assert seed not in printed


def test_static_role_rotation_refuses_the_old_password_and_accepts_the_new(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = local["client"]
    configure_like_the_program(client, local["spec"], postgres)
    old = client.read("database/static-creds/execution-settlement")["data"]
    assert old["username"] == "tp_settlement" and can_login(postgres, "tp_settlement",
                                                            old["password"])
    time.sleep(1.1)  # last_vault_rotation has sub-second precision; make "after" unambiguous
    _, before_file, before = bump_preflight_apply(local, capsys, STATIC, tmp_path)
    assert before["last_vault_rotation"]
    new = client.read("database/static-creds/execution-settlement")["data"]
    assert new["password"] != old["password"]
    assert not can_login(postgres, "tp_settlement", old["password"]), "old password refused"
    assert can_login(postgres, "tp_settlement", new["password"]), "new password accepted"
    code, result, printed = verify(local, capsys, before_file)
    assert code == 0, result["failures"]
    assert result["credentials"][STATIC]["last_vault_rotation"] != before["last_vault_rotation"]
    assert old["password"] not in printed and new["password"] not in printed
    evidence = tmp_path / "verify.json"
    evidence.write_text(json.dumps(result))
    code, recorded, _ = cli(capsys, "record", *common(local), "--pr", "#17", "--evidence",
                            str(evidence), "--date", "2026-12-01")
    assert code == 0, recorded
    assert recorded["entries"] == [{"secret": STATIC, "kind": "db-static-role", "old_version": 1,
                                    "new_version": 2, "live_version": None,
                                    "live_updated_time": None, "consumers": ["execution"],
                                    "reason": None, "ticket": None}]
    text = (local["root"] / recorded["record"]).read_text()
    request_id = result["credentials"][STATIC]["audit"]["request_id"]
    assert f"`{STATIC}` (db-static-role) | 1 → 2" in text and request_id in text
    assert old["password"] not in text and new["password"] not in text


def test_lease_generation_revokes_every_lease_and_a_watching_manager_recovers(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client, server = local["client"], local["server"]
    lease_seconds = 6
    configure_like_the_program(client, local["spec"], postgres, dynamic_ttl=(lease_seconds, 120))
    stale = [client.secrets.database.generate_credentials("tradepulse-execution",
                                                          mount_point="database")
             for _ in range(2)]
    env_file = tmp_path / "watch.env"
    env_file.write_text(f"VAULT_TOKEN={server.root_token}\n")
    output = tmp_path / "run" / "execution.json"
    proc = start_cli(["--env-file", str(env_file), "secrets-issue-dynamic", "--address",
                      server.address, "--mount", "database", "--role", "tradepulse-execution",
                      "--token-env", "VAULT_TOKEN", "--output", str(output),
                      "--refresh-margin", "2", "--watch"], cwd=tmp_path)
    watcher = Watcher(postgres, client, output)
    thread = threading.Thread(target=watcher.run, daemon=True)
    try:
        wait_until(output.exists, 30, "the first credentials")
        first = read_doc(output)["lease_id"]
        thread.start()
        bump_preflight_apply(local, capsys, LEASES, tmp_path)
        revoked_at = time.monotonic()
        assert all(lease not in live_leases(client, "tradepulse-execution")
                   for lease in [first] + [s["lease_id"] for s in stale])
        wait_until(lambda: read_doc(output)["lease_id"] != first, lease_seconds + 2,
                   "the manager to issue new credentials after the revoke")
        recovered_in = time.monotonic() - revoked_at
        with capsys.disabled():  # the measured gap, shown in the test log
            print(f"\nmanager recovered {recovered_in:.2f}s after the revoke "
                  f"(lease {lease_seconds}s)")
        assert recovered_in <= lease_seconds, f"gap {recovered_in:.1f}s exceeds one lease"
        replacement = read_doc(output)
        assert can_login(postgres, replacement["username"], replacement["password"])
        code, result, printed = verify(local, capsys, tmp_path / "preflight.json")
        assert code == 0, result["failures"]
        evidence = result["credentials"][LEASES]
        assert evidence["older_than_apply"] == 0 and evidence["leases"] >= 1
        assert replacement["password"] not in printed
    finally:
        watcher.stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert watcher.errors == []
    # Login failures can only fall in the window between the revoke and the new lease.
    assert len(watcher.leases) >= 2


def test_verify_fails_a_credential_whose_rotation_was_never_applied(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_like_the_program(local["client"], local["spec"], postgres)
    assert main(["bump", "--stack", "local", STATIC, "--repo", str(local["root"])]) == 0
    capsys.readouterr()
    code, result, _ = verify(local, capsys, None)
    assert code == 1
    assert any("no audit event for the rotation write of version 2" in f
               for f in result["failures"])


def test_preflight_names_break_glass_for_rotations_the_operator_may_not_apply(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = local["client"]
    configure_like_the_program(client, local["spec"], postgres)
    client.sys.create_or_update_acl_policy(
        "rotation-operator", (paths.POLICY_DIR / "rotation-operator.hcl").read_text())
    operator = client.auth.token.create(policies=["rotation-operator"], ttl="10m")
    monkeypatch.setenv("VAULT_TOKEN", operator["auth"]["client_token"])
    for credential_id in (JWT_KEY, ROOT, LEASES, STATIC):
        assert main(["bump", "--stack", "local", credential_id, "--allow-dirty",
                     "--repo", str(local["root"])]) == 0
    capsys.readouterr()
    code, pre, _ = cli(capsys, "preflight", *common(local), "--skip-lock-check")
    assert code == 1 and "failures" in pre, pre
    failing = {f.split(" on ")[1].split(" ")[0] for f in pre["failures"] if "lacks" in f}
    assert failing == {"identity/oidc/key/tradepulse-adapters/rotate",
                       "database/rotate-root/tradepulse-postgres",
                       "sys/leases/revoke-prefix/database/creds/tradepulse-execution"}
    assert all("break-glass" in f for f in pre["failures"] if "lacks" in f)
    static = next(r for r in pre["credentials"] if r["id"] == STATIC)
    assert static["capabilities"] == ["update"], "the operator may rotate a static role"


def test_due_lists_every_class_and_staggers_a_services_static_role_behind_its_key(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # The static role rotates every 30d, like execution's session-signing-key, and both were
    # set up just now: they would be due in the same hour.
    path = paths.stack_file("local", local["root"])
    text = path.read_text()
    assert "rotation_period_seconds: 604800 # 7d" in text
    path.write_text(text.replace("rotation_period_seconds: 604800 # 7d",
                                 "rotation_period_seconds: 2592000 # 30d"))
    spec = load_stack_file(path)
    configure_like_the_program(local["client"], spec, postgres)
    code, report, _ = cli(capsys, "due", "--stack", "local", "--repo", str(local["root"]),
                          "--address", local["server"].address)
    assert code == 0, report
    kinds = {r["id"]: (r["kind"], r["state"]) for r in report["credentials"]}
    assert kinds == {
        JWT_KEY: ("jwt-key", "vault_managed"), ROOT: ("db-root", "on_demand"),
        STATIC: ("db-static-role", "ok"),
        "database/roles/tradepulse-execution": ("db-lease-generation", "on_demand"),
        "database/roles/tradepulse-ingestion": ("db-lease-generation", "on_demand"),
        "database/roles/tradepulse-analytics": ("db-lease-generation", "on_demand")}
    rows = {r["id"]: r for r in report["secrets"] + report["credentials"]}
    signing, static = rows["secret/services/execution/session-signing-key"], rows[STATIC]
    first, second = sorted((signing, static), key=lambda r: r["due_at"])
    assert first["staggered_due_at"] is None and report["staggered"] == 1
    gap = parse_time(second["staggered_due_at"]) - parse_time(first["due_at"])
    assert gap.total_seconds() == 3600
    assert f"1h after {first['id']} (same service execution)" in second["note"]


def test_drift_reports_whether_each_credential_exists_without_claiming_a_version(
    local: dict[str, Any], postgres: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["drift", "--stack", "local", "--repo", str(local["root"]), "--address",
            local["server"].address]
    code, report, _ = cli(capsys, *base)
    assert code == 0 and {r["state"] for r in report["credentials"]} == {"missing"}
    configure_like_the_program(local["client"], local["spec"], postgres)
    code, report, _ = cli(capsys, *base)
    assert code == 0
    declared = [c.id for c in credentials(local["spec"]) if c.kind != "kv"]
    # Read on several threads, reported in declaration order.
    assert [(r["id"], r["state"]) for r in report["credentials"]] == [
        (cid, "present") for cid in declared]
    assert all("keeps no version" in r["note"] for r in report["credentials"])
    # A token that may read the KV metadata but no credential: each one is "unreadable",
    # said as not observed, never present.
    local["client"].sys.create_or_update_policy(
        "kv-metadata-only", 'path "secret/metadata/*" { capabilities = ["read"] }')
    token = local["client"].auth.token.create(policies=["kv-metadata-only"], ttl="10m")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VAULT_TOKEN", token["auth"]["client_token"])
        code, report, _ = cli(capsys, *base)
    assert [(r["id"], r["state"]) for r in report["credentials"]] == [
        (cid, "unreadable") for cid in declared]
    assert all(r["note"].startswith("not observed: the token may not read ")
               for r in report["credentials"])
