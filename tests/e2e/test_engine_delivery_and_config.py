"""The real engine on the parts whose plugins we can build: delivery, config secrets, locks.

The vault plugin cannot be built from what the Go module proxy serves (see
tools/toolchain/README.md), so these programs use our delivery component
(pulumi-kubernetes, rendered to YAML) and the real CLI's config encryption,
but no Vault resource.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tools.localenv import Workspace, init_workspace

pytestmark = pytest.mark.e2e

DELIVERY_PROGRAM = '''\
"""e2e: the delivery component of one stack, through the real kubernetes provider."""
import os
import time
from pathlib import Path

import pulumi

from infra.components.secret_delivery import SecretDelivery, kubernetes_provider
from kernel.spec import load_stack_file
from kernel.spec.model import Delivery

spec = load_stack_file(Path(os.environ["E2E_STACK_FILE"]))
delivery = spec.delivery
if "E2E_RENDER_DIR" in os.environ:  # else: the stack's cluster context (KUBECONFIG)
    delivery = delivery.model_copy(update={"render_dir": os.environ["E2E_RENDER_DIR"],
                                           "context": None})
spec = spec.model_copy(update={"delivery_config": Delivery(kubernetes=delivery)})
component = SecretDelivery("delivery", spec,
                           opts=pulumi.ResourceOptions(providers=[kubernetes_provider(delivery)]))
pulumi.export("delivery_resources", component.manifests)
time.sleep(float(os.environ.get("E2E_SLEEP", "0")))
'''


def delivery_workspace(tmp: Path, stack: str = "local",
                       **backend: Any) -> tuple[Workspace, dict[str, str]]:
    ws = init_workspace(tmp / "ws", stack, backend_dir=tmp / "state", passphrase="e2e",
                        vault_addr="http://127.0.0.1:1", vault_token="unused",
                        spec_text=(REPO_ROOT / f"Pulumi.{stack}.yaml").read_text(), **backend)
    main = tmp / "ws" / "delivery"
    main.mkdir()
    (main / "__main__.py").write_text(DELIVERY_PROGRAM)
    project = yaml.safe_load((ws.root / "Pulumi.yaml").read_text())
    project["main"] = "delivery/"
    (ws.root / "Pulumi.yaml").write_text(yaml.safe_dump(project))
    env = {"E2E_STACK_FILE": str(REPO_ROOT / f"Pulumi.{stack}.yaml"),
           "E2E_RENDER_DIR": str(tmp / "manifests")}
    return ws, env


def test_delivery_renders_vso_manifests_and_converges(engine: str, tmp_path: Path) -> None:
    ws, env = delivery_workspace(tmp_path)
    ws.pulumi("up", "--yes", "--skip-preview", extra_env=env)
    ws.pulumi("preview", "--expect-no-changes", extra_env=env)
    files = sorted((tmp_path / "manifests").rglob("*.yaml"))
    docs = [yaml.safe_load(f.read_text()) for f in files]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        kinds.setdefault(doc["kind"], []).append(doc)
    assert {k: len(v) for k, v in kinds.items()} == {
        "ServiceAccount": 3, "VaultConnection": 3, "VaultAuth": 3,
        "VaultStaticSecret": 4, "VaultDynamicSecret": 4}  # 3 roles + 1 static role
    for kind in ("VaultConnection", "VaultAuth", "VaultStaticSecret", "VaultDynamicSecret"):
        for doc in kinds[kind]:
            assert doc["apiVersion"] == "secrets.hashicorp.com/v1beta1"
            assert doc["metadata"]["namespace"] in {"trading", "market-data", "analytics"}
    static = {d["metadata"]["namespace"] + "/" + d["metadata"]["name"]: d["spec"]
              for d in kinds["VaultStaticSecret"]}
    broker = static["trading/broker-api"]
    assert broker == {
        "vaultAuthRef": "execution-vault-auth", "mount": "secret", "type": "kv-v2",
        "path": "services/execution/broker-api", "refreshAfter": "60s", "hmacSecretData": True,
        "destination": {"name": "broker-api", "create": True}}  # reload restarts execution
    dynamic = {d["metadata"]["namespace"]: d["spec"] for d in kinds["VaultDynamicSecret"]
               if not d["spec"].get("allowStaticCreds")}
    static_roles = [d["spec"] for d in kinds["VaultDynamicSecret"]
                    if d["spec"].get("allowStaticCreds")]
    assert [s["path"] for s in static_roles] == ["static-creds/execution-settlement"]
    assert dynamic["market-data"]["path"] == "creds/tradepulse-ingestion"
    assert dynamic["market-data"]["renewalPercent"] == 67 and dynamic["market-data"]["revoke"]
    assert "rolloutRestartTargets" not in dynamic["market-data"]  # restarted_by: reload
    assert dynamic["analytics"]["rolloutRestartTargets"] == [
        {"kind": "Deployment", "name": "analytics-worker"}]
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"])
                for d in kinds["ServiceAccount"]}
    assert ("trading", "execution-connector") in accounts
    # Core objects against Kubernetes' published OpenAPI schemas (kubernetes-validate
    # ships them). No package we can reach ships Vault Secrets Operator's CRD schemas
    # (PyPI, npm and the Go module proxy checked), so the VSO objects are checked field
    # by field above; tests/e2e/test_local_stack.py applies them to a real API server
    # with our own CRDs (tools/kube/crds).
    for doc in kinds["ServiceAccount"]:
        kubernetes_validate.validate(doc, "1.33", strict=True)


def test_delivery_is_applied_to_a_real_api_server_and_destroyed(
    engine: str, tmp_path: Path, kube_apiserver: Any
) -> None:
    """pulumi up creates the ServiceAccounts and VSO objects on kube-apiserver (our CRDs
    validate them), a preview afterwards is clean, and destroy removes exactly them."""
    ws, env = delivery_workspace(tmp_path)
    del env["E2E_RENDER_DIR"]
    env.update(kube_apiserver.env())

    def ours() -> dict[str, set[tuple[str, str]]]:
        found: dict[str, set[tuple[str, str]]] = {}
        for kind in ("serviceaccounts", "vaultconnections", "vaultauths",
                     "vaultstaticsecrets", "vaultdynamicsecrets"):
            items = json.loads(kube_apiserver.kubectl(
                "get", kind, "-A", "-o", "json").stdout)["items"]
            found[kind] = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in items
                           if o["metadata"]["namespace"] in {"trading", "market-data",
                                                             "analytics"}
                           and o["metadata"]["name"] != "default"}
        return found

    assert all(not v for v in ours().values())
    ws.pulumi("up", "--yes", "--skip-preview", extra_env=env)
    applied = ours()
    assert {k: len(v) for k, v in applied.items()} == {
        "serviceaccounts": 3, "vaultconnections": 3, "vaultauths": 3,
        "vaultstaticsecrets": 4, "vaultdynamicsecrets": 4}  # 3 roles + 1 static role
    assert ("trading", "execution-connector") in applied["serviceaccounts"]
    assert ("analytics", "tradepulse-analytics-db-creds") in applied["vaultdynamicsecrets"]
    auth = kube_apiserver.get("vaultauths.secrets.hashicorp.com", "execution-vault-auth",
                              "trading")
    assert auth is not None
    assert auth["spec"]["kubernetes"]["audiences"] == ["vault"]
    assert auth["spec"]["kubernetes"]["tokenExpirationSeconds"] == 600  # the CRD's default
    ws.pulumi("preview", "--expect-no-changes", extra_env=env)
    ws.pulumi("destroy", "--yes", extra_env=env)
    assert all(not v for v in ours().values()), ours()
    # The cluster's own objects stay: workloads and the token reviewer.
    assert kube_apiserver.get("deployment", "execution-connector", "trading") is not None
    assert kube_apiserver.get("serviceaccount", "vault-token-reviewer", "kube-system")


def test_provided_rotation_with_the_real_cli_and_a_real_openbao(
    engine: str, tmp_path: Path, openbao: Any
) -> None:
    """bump --value-stdin stores ciphertext via `pulumi config set --secret`; the CAS write
    of the decrypted value to OpenBao (as the program makes it) then verifies."""
    import hvac

    from tests.e2e.conftest import git_init

    canary = "CANARY-e2e-provided-6d1f"
    ws, _ = delivery_workspace(tmp_path)
    client: hvac.Client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, mount_point="secret")
    client.secrets.kv.v2.create_or_update_secret(
        path="services/execution/broker-api", secret={"API_KEY": "a", "API_SECRET": "b"},
        cas=0, mount_point="secret")
    ws.set_secret("brokerApiCredentials", json.dumps({"API_KEY": "a", "API_SECRET": "b"}))
    git_init(ws.root)
    value = json.dumps({"API_KEY": canary, "API_SECRET": canary + "-2"})
    proc = subprocess.run(
        [sys.executable, "-m", "rotation", "bump", "--stack", "local",
         "secret/services/execution/broker-api", "--repo", str(ws.root), "--value-stdin",
         "--json"],
        input=value, capture_output=True, text=True, cwd=ws.root, env=ws.env(), check=False)
    assert proc.returncode == 0, proc.stderr
    assert canary not in proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert (out["old_version"], out["new_version"], out["value_stored"]) == (1, 2, True)
    text = ws.stack_file.read_text()
    assert canary not in text and "secure:" in text
    got = ws.pulumi("config", "get", "tradepulse-vault:brokerApiCredentials").stdout.strip()
    assert json.loads(got) == json.loads(value)
    plan = subprocess.run([sys.executable, "-m", "rotation", "plan", "--json", "--repo",
                           str(ws.root)], capture_output=True, text=True, env=ws.env(),
                          check=False)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    planned = json.loads(plan.stdout)
    assert [r["secret"] for r in planned["rotations"]] == ["secret/services/execution/broker-api"]
    assert planned["findings"] == []
    # The apply: version 2 written with cas=1, the value decrypted from config.
    client.secrets.kv.v2.create_or_update_secret(
        path="services/execution/broker-api", secret=json.loads(got), cas=1,
        mount_point="secret")
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", "rotate broker"], check=True)
    verify = subprocess.run(
        [sys.executable, "-m", "rotation", "verify", "--json", "--stack", "local", "--repo",
         str(ws.root), "--address", openbao.address, "--audit-log",
         str(openbao.workdir / ".local/openbao/audit.log")],
        capture_output=True, text=True, env=ws.env({"VAULT_TOKEN": openbao.root_token}),
        check=False)
    report = json.loads(verify.stdout)
    broker = "secret/services/execution/broker-api"
    assert report["rotated"] == [broker]
    assert {"secret": broker, "declared": 2, "live": 2}.items() <= next(
        v for v in report["versions"] if v["secret"] == broker).items()
    # Only the secrets this test never wrote are reported (nothing about the broker key).
    assert report["failures"] and not [f for f in report["failures"] if broker in f]
    assert report["audit_evidence"]["secret/services/execution/broker-api"]["version"] == 2
    assert canary not in verify.stdout + verify.stderr
    live = client.secrets.kv.v2.read_secret_version(
        path="services/execution/broker-api", mount_point="secret",
        raise_on_deleted_version=True)
    assert live["data"]["data"] == json.loads(value)


def test_preflight_sees_the_lock_of_a_running_update(engine: str, tmp_path: Path) -> None:
    """A real `pulumi up` holds the backend lock; preflight's lock check reports it."""
    from rotation.locks import stack_locks

    ws, env = delivery_workspace(tmp_path)
    env["E2E_SLEEP"] = "20"
    proc = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", "local",
                             "--non-interactive"], cwd=ws.root, env=ws.env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    backend = f"file://{ws.backend_dir}"
    try:
        deadline = time.monotonic() + 60
        held: tuple[str, ...] = ()
        while time.monotonic() < deadline and not held:
            held = stack_locks(backend, "tradepulse-vault", "local").locks
            time.sleep(0.2)
        assert held, "no lock seen while pulumi up ran"
        assert held[0].startswith(".pulumi/locks/organization/tradepulse-vault/local/")
    finally:
        output, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, output[-3000:]
    assert stack_locks(backend, "tradepulse-vault", "local").locks == ()


def test_prod_backend_s3_and_aws_kms_secrets_against_moto(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prod's real configuration: state in S3, secrets under an AWS KMS key (moto on loopback)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from rotation.locks import stack_locks

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": endpoint}
        for name, value in aws.items():  # preflight's lock check runs in this process
            monkeypatch.setenv(name, value)
        clients = {"endpoint_url": endpoint, "region_name": "eu-west-1",
                   "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        s3 = boto3.client("s3", **clients)
        s3.create_bucket(Bucket="tradepulse-pulumi-state",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        kms = boto3.client("kms", **clients)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tradepulse-vault-prod", TargetKeyId=key)
        provider = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())["secretsprovider"]
        assert provider == "awskms://alias/tradepulse-vault-prod?region=eu-west-1"
        backend_url = (f"s3://tradepulse-pulumi-state?endpoint={host}:{port}&disableSSL=true"
                       "&s3ForcePathStyle=true&region=eu-west-1")
        ws, env = delivery_workspace(tmp_path, "prod", backend_url=backend_url,
                                     secrets_provider=provider, base_env=aws)
        canary = "CANARY-kms-root-pw-19ab"
        ws.set_secret("databaseRootPassword", canary)
        text = ws.stack_file.read_text()
        assert canary not in text and "encryptedkey:" in text and "secure: v1:" in text
        got = ws.pulumi("config", "get", "tradepulse-vault:databaseRootPassword").stdout.strip()
        assert got == canary
        env["E2E_SLEEP"] = "8"
        proc = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", "prod",
                                 "--non-interactive"], cwd=ws.root, env=ws.env(env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen: tuple[str, ...] = ()
        deadline = time.monotonic() + 60
        while proc.poll() is None and not seen and time.monotonic() < deadline:
            seen = stack_locks(backend_url, "tradepulse-vault", "prod").locks
            time.sleep(0.3)
        output, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0, output[-3000:]
        assert seen and seen[0].startswith(".pulumi/locks/organization/tradepulse-vault/prod/")
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="tradepulse-pulumi-state")["Contents"]}
        assert ".pulumi/stacks/tradepulse-vault/prod.json" in keys
        state = s3.get_object(Bucket="tradepulse-pulumi-state",
                              Key=".pulumi/stacks/tradepulse-vault/prod.json")["Body"].read()
        assert canary.encode() not in state
        ws.pulumi("preview", "--expect-no-changes", extra_env=env | {"E2E_SLEEP": "0"})
    finally:
        server.stop()


@pytest.mark.parametrize(("stack", "passes"), [("staging", True), ("prod", False)])
def test_policy_pack_runs_in_a_real_preview(engine: str, tmp_path: Path, stack: str,
                                            passes: bool) -> None:
    """`pulumi preview --policy-pack` with our CrossGuard pack, on the delivery program.

    Without the vault plugin the program declares no vault.Audit, so prod (which must
    have two audit devices) is refused by the pack while staging passes.
    """
    ws, env = delivery_workspace(tmp_path, stack)
    pack = str(REPO_ROOT / "policies" / "guard" / "run-pack")
    proc = ws.pulumi("preview", "--policy-pack", pack, check=False, extra_env=env)
    output = proc.stdout + proc.stderr
    if passes:
        assert proc.returncode == 0, output[-3000:]
        assert "mandatory" not in output
    else:
        assert proc.returncode != 0
        assert "prod-dr-two-audit-devices" in output and "mandatory" in output
