"""Delivery under mocks: VSO resources per service, and the chain VSO -> role -> policy -> path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel import paths
from kernel.policy_files import allows, parse_policy, read_policy
from kernel.spec import SpecError, load_stack_file
from kernel.spec.model import Delivery
from tests.conftest import STACKS, MockRun
from tests.infra.test_program import evaluate, spec_for

CR = "kubernetes:secrets.hashicorp.com/v1beta1:"
SA = "kubernetes:core/v1:ServiceAccount"
K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"


def by_kind(run: MockRun, kind: str) -> list[dict[str, Any]]:
    return [r.inputs for r in run.mocks.resources if r.typ == f"{CR}{kind}"]


@pytest.mark.parametrize("stack", STACKS)
def test_each_service_gets_its_account_and_vso_resources(stack: str, pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks(stack)
    spec = spec_for(stack)
    evaluate(run, spec)
    assert spec.delivery is not None
    accounts = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                for r in run.mocks.resources if r.typ == SA}
    assert accounts == {(s.kubernetes.namespace, s.kubernetes.service_account)
                        for s in spec.services if s.kubernetes}
    connections = by_kind(run, "VaultConnection")
    assert {c["spec"]["address"] for c in connections} == {spec.vault.address}
    for service in spec.services:
        assert service.kubernetes is not None
        ns = service.kubernetes.namespace
        # A `restarted_by: reload` workload is restarted by `rotation reload`, not by VSO.
        target = [{"kind": service.kubernetes.workload.kind,
                   "name": service.kubernetes.workload.name}] \
            if service.kubernetes.restarted_by == "vso" else None
        statics = [r for r in by_kind(run, "VaultStaticSecret")
                   if r["metadata"]["namespace"] == ns]
        assert {r["spec"]["path"] for r in statics} == {
            s.path for s in spec.static_secrets if service.name in s.consumers}
        for r in statics:
            assert r["spec"]["type"] == "kv-v2" and r["spec"]["hmacSecretData"] is True
            assert r["spec"]["refreshAfter"] == f"{spec.delivery.refresh_after_seconds}s"
            assert r["spec"].get("rolloutRestartTargets") == target
        dynamics = [r for r in by_kind(run, "VaultDynamicSecret")
                    if r["metadata"]["namespace"] == ns and not r["spec"].get("allowStaticCreds")]
        assert {r["spec"]["path"] for r in dynamics} == {
            f"creds/{role}" for role in service.database_roles}
        static_roles = [r for r in by_kind(run, "VaultDynamicSecret")
                        if r["metadata"]["namespace"] == ns and r["spec"].get("allowStaticCreds")]
        assert spec.database is not None
        assert {r["spec"]["path"] for r in static_roles} == {
            f"static-creds/{r.name}" for r in spec.database.static_roles
            if service.name in r.consumers}
        for r in static_roles:
            assert r["spec"].get("rolloutRestartTargets") == target and "revoke" not in r["spec"]
        for r in dynamics:
            assert r["spec"]["revoke"] is True
            assert r["spec"]["renewalPercent"] == spec.delivery.renewal_percent
            assert r["spec"].get("rolloutRestartTargets") == target


@pytest.mark.parametrize("stack", STACKS)
def test_vso_auth_role_policy_and_path_line_up(stack: str, pulumi_mocks: Any) -> None:
    """Each VaultStaticSecret/VaultDynamicSecret -> VaultAuth -> Vault role -> policy -> path."""
    run: MockRun = pulumi_mocks(stack)
    spec = spec_for(stack)
    evaluate(run, spec)
    assert spec.auth.kubernetes is not None
    auths = {(a["metadata"]["namespace"], a["metadata"]["name"]): a["spec"]
             for a in by_kind(run, "VaultAuth")}
    roles = {r.inputs["roleName"]: r.inputs for r in run.mocks.resources if r.typ == K8S_ROLE}
    checked = 0
    for kind, capability_path in (
        ("VaultStaticSecret", lambda s: f"{s['mount']}/data/{s['path']}"),
        ("VaultDynamicSecret", lambda s: f"{s['mount']}/{s['path']}"),
    ):
        for resource in by_kind(run, kind):
            ns = resource["metadata"]["namespace"]
            auth = auths[(ns, resource["spec"]["vaultAuthRef"])]
            assert auth["mount"] == spec.auth.kubernetes.path and auth["method"] == "kubernetes"
            role = roles[auth["kubernetes"]["role"]]
            assert role["boundServiceAccountNamespaces"] == [ns]
            assert role["boundServiceAccountNames"] == [auth["kubernetes"]["serviceAccount"]]
            path = capability_path(resource["spec"])
            readable = any(allows(parse_policy(read_policy(p), p), path, "read")
                           for p in role["tokenPolicies"])
            assert readable, f"{kind} {ns}/{resource['metadata']['name']}: role " \
                             f"{auth['kubernetes']['role']} cannot read {path}"
            checked += 1
    assert checked >= 4


def _prod_doc() -> dict[str, Any]:
    return yaml.safe_load(paths.stack_file("prod").read_text())


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_consumer_whose_policy_cannot_read_the_secret_is_refused(tmp_path: Path) -> None:
    doc = _prod_doc()
    spec = doc["config"][paths.SPEC_CONFIG_KEY]
    # Let analytics consume the execution broker key: its policy cannot read that path.
    spec["static_secrets"][0]["consumers"] = ["execution", "analytics"]
    with pytest.raises(SpecError, match=r"static_secrets\[0\]\.consumers\[1\]: service "
                       r"'analytics' cannot read secret/data/services/execution/broker-api"):
        load_stack_file(_write(tmp_path, doc))


def test_a_consumer_with_neither_route_is_refused(tmp_path: Path) -> None:
    doc = _prod_doc()
    spec = doc["config"][paths.SPEC_CONFIG_KEY]
    del spec["services"][2]["kubernetes"]
    with pytest.raises(SpecError, match=r"services\[2\]: service 'analytics' consumes secrets "
                       r"but has neither kubernetes"):
        load_stack_file(_write(tmp_path, doc))


def test_a_service_outside_the_cluster_gets_no_vso_resources(
    tmp_path: Path, pulumi_mocks: Any
) -> None:
    doc = _prod_doc()
    spec_doc = doc["config"][paths.SPEC_CONFIG_KEY]
    svc = spec_doc["services"][2]
    del svc["kubernetes"]
    svc["outside_cluster"] = {"host": "analytics-batch-01", "output":
                              "state/vault/dynamic_analytics.json"}
    spec = load_stack_file(_write(tmp_path, copy.deepcopy(doc)))
    assert spec.services[2].outside_cluster is not None
    run: MockRun = pulumi_mocks("prod")
    evaluate(run, spec)
    namespaces = {r["metadata"]["namespace"] for r in by_kind(run, "VaultDynamicSecret")}
    assert "analytics" not in namespaces
    assert "analytics" not in {r.inputs["roleName"] for r in run.mocks.resources
                               if r.typ == K8S_ROLE}


def test_kubernetes_provider_targets_each_stacks_cluster_context(pulumi_mocks: Any) -> None:
    # local: make up's (or a test's) kube-apiserver; the objects are applied, not rendered.
    for stack, key, want in (("local", "context", "tradepulse-local"),
                             ("prod", "context", "tradepulse-prod-eks")):
        run: MockRun = pulumi_mocks(stack)
        evaluate(run, spec_for(stack))
        provider = run.mocks.of_type("pulumi:providers:kubernetes")["kubernetes"]
        assert provider.inputs[key] == want


def test_a_render_dir_renders_instead_of_applying(pulumi_mocks: Any, tmp_path: Path) -> None:
    spec = spec_for("local")
    assert spec.delivery is not None
    spec = spec.model_copy(update={"delivery_config": Delivery(kubernetes=spec.delivery.model_copy(
        update={"context": None, "render_dir": str(tmp_path / "manifests")}))})
    run: MockRun = pulumi_mocks("local")
    evaluate(run, spec)
    provider = run.mocks.of_type("pulumi:providers:kubernetes")["kubernetes"]
    assert provider.inputs["renderYamlToDirectory"] == str(tmp_path / "manifests")
    assert "context" not in provider.inputs


def test_reload_restarted_services_get_no_vso_restart_targets(pulumi_mocks: Any) -> None:
    spec = spec_for("local")
    by_reload = {s.kubernetes.namespace for s in spec.services
                 if s.kubernetes and s.kubernetes.restarted_by == "reload"}
    by_vso = {s.kubernetes.namespace for s in spec.services
              if s.kubernetes and s.kubernetes.restarted_by == "vso"}
    assert by_reload and by_vso, "the local stack exercises both restart routes"
    run: MockRun = pulumi_mocks("local")
    evaluate(run, spec)
    for kind in ("VaultStaticSecret", "VaultDynamicSecret"):
        for r in by_kind(run, kind):
            has = "rolloutRestartTargets" in r["spec"]
            assert has is (r["metadata"]["namespace"] in by_vso), (kind, r["metadata"])
