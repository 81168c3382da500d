"""`pulumi up --stack local` for real: the whole program against OpenBao, PostgreSQL and a
kube-apiserver.

One module-scoped workspace walks the life of the stack in order: apply,
idempotence, what the live servers hold (read with hvac and kubectl, not through
Pulumi), a rotation (bump -> preview diff -> up -> verify --consumers -> reload ->
record), an out-of-band write that makes the next apply fail, and destroy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from kernel.spec import load_stack_file
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import git_init, local_stack
from tests.kubeserver import KubeApiServer
from tests.servers import start_openbao
from tools.localenv import (
    Workspace,
    init_workspace,
    render_only,
    set_stack_secrets,
)

pytestmark = pytest.mark.e2e

SIGNING = "secret/services/execution/session-signing-key"
HMAC = "secret/services/analytics/warehouse-hmac"
CANARY = "CANARY-out-of-band-4e7d"


@pytest.fixture(scope="module")
def stack(engine: str, tmp_path_factory: pytest.TempPathFactory, postgres: Any,
          kube_apiserver: KubeApiServer) -> Iterator[tuple[Workspace, Any]]:
    """A workspace for the local stack, applied once against a fresh OpenBao and the API server."""
    with local_stack(tmp_path_factory.mktemp("local-stack"), postgres,
                     cluster=kube_apiserver) as (ws, server, _):
        git_init(ws.root)
        ws.pulumi("up", "--yes", "--skip-preview")
        yield ws, server


def rotation_cli(ws: Workspace, server: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rotation", *args], capture_output=True,
                          text=True, cwd=ws.root, env=ws.env(), check=False)


def test_apply_is_idempotent(stack: tuple[Workspace, Any]) -> None:
    ws, _ = stack
    proc = ws.pulumi("preview", "--expect-no-changes", check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_live_server_holds_exactly_the_declared_configuration(
    stack: tuple[Workspace, Any],
) -> None:
    ws, server = stack
    spec = load_stack_file(ws.stack_file, policy_dir=REPO_ROOT / "policies" / "acl")
    client: hvac.Client = server.client()
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv" and mounts["secret/"]["options"]["version"] == "2"
    assert mounts["database/"]["type"] == "database"
    kv_config = client.secrets.kv.v2.read_configuration(mount_point="secret")["data"]
    assert kv_config["cas_required"] is True and kv_config["max_versions"] == 5
    auths = client.sys.list_auth_methods()["data"]
    assert auths["kubernetes/"]["type"] == "kubernetes" and auths["jwt-ci/"]["type"] == "jwt"
    policies = set(client.sys.list_acl_policies()["data"]["keys"]) - {"default", "root"}
    assert policies == set(spec.policies)
    audit = client.sys.list_enabled_audit_devices()["data"]
    assert {k.rstrip("/"): v["type"] for k, v in audit.items()} == {"file-local": "file"}
    assert spec.database is not None
    roles = client.secrets.database.list_roles(mount_point="database")["data"]["keys"]
    assert set(roles) == {r.name for r in spec.database.roles}
    k8s_roles = client.adapter.list("/v1/auth/kubernetes/role")["data"]["keys"]
    assert set(k8s_roles) == {s.name for s in spec.services}
    execution = client.adapter.get("/v1/auth/kubernetes/role/execution")["data"]
    assert execution["bound_service_account_names"] == ["execution-connector"]
    assert execution["bound_service_account_namespaces"] == ["trading"]
    assert execution["token_policies"] == ["tradepulse-execution"]
    assert execution["audience"] == "vault"
    config = client.adapter.get("/v1/auth/kubernetes/config")["data"]
    assert spec.auth.kubernetes is not None
    assert config["kubernetes_host"] == spec.auth.kubernetes.host  # the test's API server
    assert config["kubernetes_ca_cert"].strip() == (spec.auth.kubernetes.ca_cert or "").strip()
    assert config["disable_local_ca_jwt"] is True
    jwt_roles = client.adapter.list("/v1/auth/jwt-ci/role")["data"]["keys"]
    assert jwt_roles == ["ci-rotate-local"]
    key = client.adapter.get("/v1/identity/oidc/key/tradepulse-adapters")["data"]
    assert key["rotation_period"] == 86400
    headers = client.adapter.get("/v1/sys/config/auditing/request-headers")["data"]["headers"]
    assert set(headers) == {"x-request-id"}
    for secret in spec.static_secrets:
        meta = client.secrets.kv.v2.read_secret_metadata(path=secret.path, mount_point="secret")
        assert meta["data"]["current_version"] == secret.version, secret.id
    creds = client.secrets.database.generate_credentials("tradepulse-execution",
                                                         mount_point="database")
    client.sys.revoke_lease(creds["lease_id"])


def managed(kube: KubeApiServer, kind: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects of ``kind`` in every namespace, by (namespace, name)."""
    listed = json.loads(kube.kubectl("get", kind, "-A", "-o", "json").stdout)["items"]
    return {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in listed}


def test_delivery_objects_are_applied_to_the_api_server(
    stack: tuple[Workspace, Any], kube_apiserver: KubeApiServer
) -> None:
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    accounts = managed(kube_apiserver, "serviceaccounts")
    for service in spec.services:
        assert service.kubernetes is not None
        assert (service.kubernetes.namespace, service.kubernetes.service_account) in accounts
    statics = managed(kube_apiserver, "vaultstaticsecrets.secrets.hashicorp.com")
    assert {(ns, o["spec"]["path"]) for (ns, _), o in statics.items()} == {
        (s.kubernetes.namespace, secret.path) for secret in spec.static_secrets
        for s in spec.services if s.name in secret.consumers and s.kubernetes}
    signing = statics[("trading", "session-signing-key")]["spec"]
    assert signing["refreshAfter"] == "60s" and signing["hmacSecretData"] is True
    assert "rolloutRestartTargets" not in signing, "execution is restarted by reload"
    dynamics = managed(kube_apiserver, "vaultdynamicsecrets.secrets.hashicorp.com")
    analytics = dynamics[("analytics", "tradepulse-analytics-db-creds")]["spec"]
    assert analytics["renewalPercent"] == 67 and analytics["revoke"] is True
    assert analytics["rolloutRestartTargets"] == [
        {"kind": "Deployment", "name": "analytics-worker"}]
    auths = managed(kube_apiserver, "vaultauths.secrets.hashicorp.com")
    assert auths[("market-data", "ingestion-vault-auth")]["spec"]["kubernetes"] == {
        "role": "ingestion", "serviceAccount": "ingestion", "audiences": ["vault"],
        "tokenExpirationSeconds": 600}  # the CRD's default, filled in by the API server
    assert len(managed(kube_apiserver, "vaultconnections.secrets.hashicorp.com")) == 3


def test_the_api_server_refuses_an_object_our_crds_do_not_allow(
    stack: tuple[Workspace, Any], kube_apiserver: KubeApiServer
) -> None:
    bad = {"apiVersion": "secrets.hashicorp.com/v1beta1", "kind": "VaultDynamicSecret",
           "metadata": {"name": "bad", "namespace": "trading"},
           "spec": {"mount": "database", "path": "creds/x", "renewalPercent": 99,
                    "destination": {"name": "x", "create": True}, "rolloutRestartTargets": [
                        {"kind": "CronJob", "name": "x"}]}}
    with pytest.raises(RuntimeError) as refused:
        kube_apiserver.apply([bad])
    assert "renewalPercent" in str(refused.value) and "CronJob" in str(refused.value)


def test_rotation_bump_preview_up_verify_record(stack: tuple[Workspace, Any]) -> None:
    ws, server = stack
    bump = rotation_cli(ws, server, "bump", "--stack", "local", SIGNING, "--repo", str(ws.root))
    assert bump.returncode == 0, bump.stderr
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", "rotate signing key"],
                   check=True)
    preview = json.loads(ws.pulumi("preview", "--json", "--diff").stdout)
    changed = {s["urn"].rsplit("::", 1)[1]: s["op"] for s in preview["steps"]
               if s["op"] not in {"same", "read"}}
    assert set(changed) == {"value-secret-services-execution-session-signing-key-signing_key",
                            "secret-secret-services-execution-session-signing-key"}, changed
    assert changed["secret-secret-services-execution-session-signing-key"] == "update"
    ws.pulumi("up", "--yes", "--skip-preview")
    audit_log = str(server.workdir / ".local" / "openbao" / "audit.log")
    verify = rotation_cli(ws, server, "verify", "--json", "--stack", "local", "--repo",
                          str(ws.root), "--audit-log", audit_log)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, report
    assert report["rotated"] == [SIGNING]
    assert report["audit_evidence"][SIGNING]["version"] == 2
    # Post-rotation: the consumer reads the new version through its own login, then
    # reload restarts its workload (restarted_by: reload) once.
    kubeconfig = ws.env()["KUBECONFIG"]
    consumers = rotation_cli(ws, server, "verify", "--json", "--stack", "local", "--repo",
                             str(ws.root), "--audit-log", audit_log, "--consumers",
                             "--kubeconfig", kubeconfig)
    checked = json.loads(consumers.stdout)
    assert consumers.returncode == 0, checked
    assert [(c["service"], c["secrets"].get(SIGNING)) for c in checked["consumers"]] == [
        ("execution", 2)]
    reload = rotation_cli(ws, server, "reload", "--json", "--stack", "local", "--repo",
                          str(ws.root), "--kubeconfig", kubeconfig)
    reloaded = json.loads(reload.stdout)
    assert reload.returncode == 0, reloaded
    assert [r["workload"] for r in reloaded["restarted"]] == [
        "trading/Deployment/execution-connector"]
    record = rotation_cli(ws, server, "record", "--stack", "local", "--repo", str(ws.root),
                          "--operator", "E2E", "--date", "2026-11-27")
    assert record.returncode == 0, record.stderr
    text = (ws.root / "reports/security/secret-rotations/2026-11-27.md").read_text()
    assert f"| `{SIGNING}` | 1 → 2 | 2 |" in text
    live = server.client().secrets.kv.v2.read_secret_version(
        path="services/execution/session-signing-key", mount_point="secret",
        raise_on_deleted_version=True)["data"]["data"]["SIGNING_KEY"]
    assert live not in text and live not in verify.stdout + record.stdout


def test_out_of_band_write_fails_the_apply_and_survives(stack: tuple[Workspace, Any]) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    path = "services/analytics/warehouse-hmac"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"HMAC_KEY": CANARY}, cas=1,
                                                 mount_point="secret")
    bump = rotation_cli(ws, server, "bump", "--stack", "local", HMAC, "--repo", str(ws.root))
    assert bump.returncode == 0, bump.stderr
    proc = ws.pulumi("up", "--yes", "--skip-preview", check=False)
    assert proc.returncode != 0
    assert "check-and-set" in proc.stdout + proc.stderr
    assert CANARY not in proc.stdout + proc.stderr
    live = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                    raise_on_deleted_version=True)["data"]
    assert live["data"] == {"HMAC_KEY": CANARY} and live["metadata"]["version"] == 2


def test_destroy_leaves_none_of_our_configuration(stack: tuple[Workspace, Any]) -> None:
    ws, server = stack
    ws.pulumi("destroy", "--yes")
    client: hvac.Client = server.client()
    mounts = set(client.sys.list_mounted_secrets_engines()["data"])
    assert not mounts & {"secret/", "database/"}
    auths = set(client.sys.list_auth_methods()["data"])
    assert not auths & {"kubernetes/", "jwt-ci/"}
    assert set(client.sys.list_acl_policies()["data"]["keys"]) == {"default", "root"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.adapter.get("/v1/identity/oidc/key/tradepulse-adapters")
    # Audit devices belong to the server config on OpenBao: they stay.
    assert "file-local/" in client.sys.list_enabled_audit_devices()["data"]


def test_destroy_removed_the_delivery_objects(
    stack: tuple[Workspace, Any], kube_apiserver: KubeApiServer
) -> None:
    """After the destroy above: our objects are gone, the cluster's own stay."""
    for kind in ("vaultconnections", "vaultauths", "vaultstaticsecrets", "vaultdynamicsecrets"):
        assert managed(kube_apiserver, f"{kind}.secrets.hashicorp.com") == {}, kind
    accounts = managed(kube_apiserver, "serviceaccounts")
    for ns, name in (("trading", "execution-connector"), ("market-data", "ingestion"),
                     ("analytics", "analytics-worker")):
        assert (ns, name) not in accounts
    assert ("kube-system", "vault-token-reviewer") in accounts, "the cluster's reviewer stays"
    assert kube_apiserver.get("deployment", "execution-connector", "trading") is not None


def test_vault_flavour_creates_audit_devices_through_the_api(
    engine: str, tmp_path: Path, postgres: Any
) -> None:
    """The `vault` flavour's path: vault.Audit created through the API and checked."""
    workdir = tmp_path / "openbao"
    workdir.mkdir()
    server = start_openbao(workdir, extra_config="unsafe_allow_api_audit_creation = true\n")
    try:
        server.client().sys.disable_secrets_engine("secret")
        audit_dir = tmp_path / "audit"
        audit_dir.mkdir()

        def edit(data: dict[str, Any]) -> None:
            data["vault"]["address"] = server.address
            data["vault"]["flavour"] = "vault"
            render_only(data, str(tmp_path / "manifests"))
            data["audit"]["devices"] = [
                {"path": "file-primary", "type": "file",
                 "options": {"file_path": str(audit_dir / "primary.log")}},
                {"path": "file-secondary", "type": "file",
                 "options": {"file_path": str(audit_dir / "secondary.log")}},
            ]

        ws = init_workspace(tmp_path / "ws", "local", backend_dir=tmp_path / "state",
                            passphrase="e2e", vault_addr=server.address,
                            vault_token=server.root_token,
                            spec_text=(REPO_ROOT / "Pulumi.local.yaml").read_text(), edit=edit)
        set_stack_secrets(ws, load_stack_file(REPO_ROOT / "Pulumi.local.yaml"), postgres)
        ws.pulumi("up", "--yes", "--skip-preview")
        audit = server.client().sys.list_enabled_audit_devices()["data"]
        assert {k.rstrip("/"): v["options"]["file_path"] for k, v in audit.items()} == {
            "file-primary": str(audit_dir / "primary.log"),
            "file-secondary": str(audit_dir / "secondary.log")}
        assert (audit_dir / "primary.log").stat().st_size > 0
        ws.pulumi("preview", "--expect-no-changes")
        ws.pulumi("destroy", "--yes")
        assert server.client().sys.list_enabled_audit_devices()["data"] == {}
    finally:
        server.stop()
