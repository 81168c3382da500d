"""Services log in for real: TokenRequest tokens from a real kube-apiserver, real OpenBao.

OpenBao is configured from the local stack's spec with hvac (policies from their HCL
files, KV secrets at their declared versions, the database engine on a real PostgreSQL,
Kubernetes auth pointed at the API server with the token reviewer's JWT); the Pulumi
engine is not involved here (tests/e2e applies the same through it). Every login goes
through Vault's TokenReview call to the API server; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from kernel import paths
from kernel.naming import kubernetes_role_name
from kernel.spec import EnvironmentSpec, load_stack_file
from tests.conftest import REPO_ROOT
from tests.kubeserver import KubeApiServer, path_with_toolchain, reviewer_token
from tests.rotation.dynamic_support import live_leases

pytestmark = pytest.mark.integration

CANARY = "CANARY-consumer-value-5d21"  # planted in every secret; must never be printed


def configure_vault(client: hvac.Client, spec: EnvironmentSpec, kube: KubeApiServer,
                    postgres: Any) -> None:
    """What the local stack's program declares, written with hvac (no Pulumi engine)."""
    auth = spec.auth.kubernetes
    assert auth is not None and spec.database is not None
    for name in spec.policies:
        client.sys.create_or_update_acl_policy(
            name, policy=(paths.POLICY_DIR / f"{name}.hcl").read_text())
    for secret in spec.static_secrets:  # the dev server's secret/ is KV v2 already
        client.secrets.kv.v2.create_or_update_secret(
            path=secret.path, mount_point=secret.mount,
            secret={k: f"{CANARY}-{k}" for k in secret.keys})
    db = spec.database
    client.sys.enable_secrets_engine("database", path=db.mount)
    client.secrets.database.configure(
        name=db.connection.name, plugin_name="postgresql-database-plugin",
        connection_url=postgres.connection_url_template(), username=postgres.superuser,
        password=postgres.password, allowed_roles=[r.name for r in db.roles],
        mount_point=db.mount)
    for role in db.roles:
        client.secrets.database.create_role(
            name=role.name, db_name=db.connection.name,
            creation_statements=list(role.creation_statements),
            revocation_statements=list(role.revocation_statements),
            default_ttl=role.default_ttl_seconds, max_ttl=role.max_ttl_seconds,
            mount_point=db.mount)
    client.sys.enable_auth_method("kubernetes", path=auth.path)
    client.auth.kubernetes.configure(
        kubernetes_host=kube.address, kubernetes_ca_cert=kube.ca_pem,
        token_reviewer_jwt=reviewer_token(kube, 3600), disable_local_ca_jwt=True,
        mount_point=auth.path)
    for service in spec.services:
        assert service.kubernetes is not None
        client.auth.kubernetes.create_role(
            kubernetes_role_name(service.name),
            bound_service_account_names=[service.kubernetes.service_account],
            bound_service_account_namespaces=[service.kubernetes.namespace],
            audience=auth.audience, policies=list(service.policies),
            ttl=service.token_ttl_seconds, max_ttl=service.token_max_ttl_seconds,
            mount_point=auth.path)


@pytest.fixture(scope="module")
def cluster(kube_apiserver: KubeApiServer, postgres: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeApiServer, Any]]:
    """The API server with the local stack's ServiceAccounts, and a configured OpenBao."""
    from tests.servers import start_openbao

    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    kube_apiserver.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": s.kubernetes.service_account, "namespace": s.kubernetes.namespace}}
        for s in spec.services if s.kubernetes is not None)
    server = start_openbao(tmp_path_factory.mktemp("openbao-k8s"))
    try:
        configure_vault(server.client(), spec, kube_apiserver, postgres)
        yield kube_apiserver, server
    finally:
        server.stop()


def stack_dir(tmp_path: Path) -> Path:
    """A directory with the stack files and policies and no git history (nothing rotated)."""
    for stack_file in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(stack_file, tmp_path / stack_file.name)
    shutil.copytree(REPO_ROOT / "policies", tmp_path / "policies")
    return tmp_path


def verify_consumers(kube: KubeApiServer, bao: Any, repo: Path,
                     *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**bao.env(), "PATH": path_with_toolchain(), "HOME": str(repo)}
    return subprocess.run(
        [sys.executable, "-m", "rotation", "verify", "--json", "--stack", "local", "--repo",
         str(repo), "--address", bao.address, "--consumers", "--kubeconfig",
         str(kube.kubeconfig), *extra],
        capture_output=True, text=True, cwd=repo, env=env, check=False, timeout=300)


def login(bao: Any, role: str, jwt: str) -> hvac.Client:
    client = hvac.Client(url=bao.address, timeout=10)
    client.auth.kubernetes.login(role, jwt, mount_point="kubernetes")
    return client


def test_every_service_logs_in_and_reaches_exactly_its_own_secrets(
    cluster: tuple[KubeApiServer, Any], tmp_path: Path
) -> None:
    kube, bao = cluster
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    proc = verify_consumers(kube, bao, stack_dir(tmp_path))
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, (report, proc.stderr)
    checks = {c["service"]: c for c in report["consumers"]}
    assert set(checks) == {s.name for s in spec.services}
    assert spec.database is not None
    for service in spec.services:
        check = checks[service.name]
        assert check["logged_in"] and not check["failures"], check
        assert check["policies"] == sorted(["default", *service.policies])
        own = {s.id: s.version for s in spec.static_secrets if service.name in s.consumers}
        assert check["secrets"] == own
        assert check["database_roles"] == list(service.database_roles)
        foreign_secrets = {f"secret {s.id}" for s in spec.static_secrets
                           if service.name not in s.consumers}
        foreign_roles = {f"database role {r.name}" for r in spec.database.roles
                         if r.name not in service.database_roles}
        refused = set(check["refused"])
        assert refused >= foreign_secrets | foreign_roles, check
        assert any(r.startswith("login as ") for r in refused), "cross-role login refused"
    assert CANARY not in proc.stdout + proc.stderr
    # The service tokens were revoked, and with them every lease they were issued.
    # (Vault may finish revoking a token's leases just after the revoke call returns.)
    deadline = time.monotonic() + 20
    while live_leases(bao.client(), "tradepulse-execution") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert live_leases(bao.client(), "tradepulse-execution") == []


def test_a_token_is_refused_by_another_services_role(
    cluster: tuple[KubeApiServer, Any]
) -> None:
    kube, bao = cluster
    jwt = kube.token("trading", "execution-connector", "vault")
    assert login(bao, "execution", jwt).is_authenticated()
    for other in ("ingestion", "analytics"):
        with pytest.raises(hvac.exceptions.Forbidden):
            login(bao, other, jwt)


def test_the_right_name_in_the_wrong_namespace_is_refused(
    cluster: tuple[KubeApiServer, Any]
) -> None:
    kube, bao = cluster
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "impostor"}},
                {"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "execution-connector", "namespace": "impostor"}}])
    jwt = kube.token("impostor", "execution-connector", "vault")
    with pytest.raises(hvac.exceptions.Forbidden, match="namespace"):
        login(bao, "execution", jwt)


def test_a_token_for_another_audience_is_refused(cluster: tuple[KubeApiServer, Any]) -> None:
    kube, bao = cluster
    for audience in ("not-vault", "https://kubernetes.default.svc.cluster.local"):
        jwt = kube.token("trading", "execution-connector", audience)
        with pytest.raises(hvac.exceptions.Forbidden):
            login(bao, "execution", jwt)


def test_a_deleted_service_account_can_no_longer_log_in(
    cluster: tuple[KubeApiServer, Any]
) -> None:
    kube, bao = cluster
    kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "analytics-worker", "namespace": "analytics"}}])
    jwt = kube.token("analytics", "analytics-worker", "vault")
    kube.kubectl("delete", "serviceaccount", "analytics-worker", "-n", "analytics")
    try:
        # TokenReview checks the account still exists (and is the same object).
        with pytest.raises(hvac.exceptions.Forbidden):
            login(bao, "analytics", jwt)
    finally:
        kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                     "metadata": {"name": "analytics-worker", "namespace": "analytics"}}])


def test_a_consumer_reading_an_undeclared_version_fails_verify(
    cluster: tuple[KubeApiServer, Any], tmp_path: Path
) -> None:
    kube, bao = cluster
    path = "services/ingestion/market-data-feed"
    client = bao.client()
    before = client.secrets.kv.v2.read_secret_version(path=path, mount_point="secret",
                                                      raise_on_deleted_version=True)
    version = before["data"]["metadata"]["version"]
    client.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                                 secret={"FEED_TOKEN": f"{CANARY}-oob"})
    try:
        proc = verify_consumers(kube, bao, stack_dir(tmp_path))
        report = json.loads(proc.stdout)
        assert proc.returncode == 1
        ingestion = next(c for c in report["consumers"] if c["service"] == "ingestion")
        assert ingestion["secrets"][f"secret/{path}"] == version + 1
        assert any(f"version {version + 1}, declared {version}" in f
                   for f in ingestion["failures"]), ingestion
        assert CANARY not in proc.stdout + proc.stderr
    finally:
        # Back to the declared version: the old data as a new version is still "ahead";
        # the other tests do not read this secret's version, so destroying is enough.
        client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point="secret")
        client.secrets.kv.v2.create_or_update_secret(path=path, mount_point="secret",
                                                     secret={"FEED_TOKEN": f"{CANARY}-again"})


def test_an_unreachable_cluster_fails_verify_with_a_message(
    cluster: tuple[KubeApiServer, Any], tmp_path: Path
) -> None:
    kube, bao = cluster
    broken = tmp_path / "kubeconfig"
    broken.write_text(kube.kubeconfig.read_text().replace(kube.address, "https://127.0.0.1:1"))
    repo = tmp_path / "repo"
    repo.mkdir()
    stack_dir(repo)
    env = {**bao.env(), "PATH": path_with_toolchain(), "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "rotation", "verify", "--stack", "local", "--repo", str(repo),
         "--address", bao.address, "--consumers", "--kubeconfig", str(broken)],
        capture_output=True, text=True, env=env, check=False, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "kubectl failed while requesting a token" in proc.stderr
    assert "Traceback" not in proc.stderr
