"""The program under Pulumi mocks: every stack registers exactly what its spec declares."""

from __future__ import annotations

import json
import runpy
from typing import Any

import pulumi
import pytest

from infra import program
from infra.components import DatabaseSecrets
from infra.components.audit_devices import AuditDeviceMissingError
from kernel import paths
from kernel.spec import EnvironmentSpec, load_stack_file
from kernel.targets import ROTATION_ONLY_ENV, kv_urns, rotation_only_secrets
from tests.conftest import CANARY_DB_PASSWORD, CANARY_PROVIDED, STACKS, MockRun, audit_answer

MOUNT = "vault:index/mount:Mount"
KV_CONFIG = "vault:kv/secretBackendV2:SecretBackendV2"
POLICY = "vault:index/policy:Policy"
AUDIT = "vault:index/audit:Audit"
AUDIT_HEADER = "vault:index/auditRequestHeader:AuditRequestHeader"
DB_CONN = "vault:database/secretBackendConnection:SecretBackendConnection"
DB_ROLE = "vault:database/secretBackendRole:SecretBackendRole"
OIDC_KEY = "vault:identity/oidcKey:OidcKey"
AUTH_BACKEND = "vault:index/authBackend:AuthBackend"
K8S_CONFIG = "vault:kubernetes/authBackendConfig:AuthBackendConfig"
K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
JWT_BACKEND = "vault:jwt/authBackend:AuthBackend"
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
PROVIDER = "pulumi:providers:vault"

# Literal expectations, so a spec edit that drops something shows up here too.
EXPECTED_SUMMARY = {
    "prod": {"audit": ["file-primary", "syslog-secondary"], "break_glass": True,
             "address": "https://vault.tradepulse.internal:8200", "flavour": "vault"},
    "dr": {"audit": ["file-primary", "syslog-secondary"], "break_glass": True,
           "address": "https://vault.dr.eu-central-1.tradepulse.internal:8200",
           "flavour": "vault"},
    "staging": {"audit": ["file-primary"], "break_glass": False,
                "address": "https://vault.staging.tradepulse.internal:8200", "flavour": "vault"},
    "local": {"audit": ["file-local"], "break_glass": False,
              "address": "http://127.0.0.1:8200", "flavour": "openbao"},
}


def db_secrets() -> DatabaseSecrets:
    return DatabaseSecrets(
        connection_url=pulumi.Output.secret("postgresql://{{username}}:{{password}}@db:5432/tp"),
        username=pulumi.Output.secret("vault_root"),
        password=pulumi.Output.secret(CANARY_DB_PASSWORD),
    )


def provided_values(spec: EnvironmentSpec) -> dict[str, pulumi.Output[str]]:
    """Canary values for every provided secret, as config secrets would be."""
    out: dict[str, pulumi.Output[str]] = {}
    for secret in spec.static_secrets:
        if secret.config_secret:
            value = {k: f"{CANARY_PROVIDED}-{k}" for k in secret.keys}
            out[secret.config_secret] = pulumi.Output.secret(json.dumps(value))
    return out


def prod_mirror() -> dict[str, Any]:
    """What prod's dr_mirror output holds for its mirrored secrets."""
    spec = spec_for("prod")
    return {s.id: {"version": s.version, "data": {k: f"{CANARY_PROVIDED}-{k}" for k in s.keys}}
            for s in spec.static_secrets if s.mirror_to_dr}


def spec_for(stack: str) -> EnvironmentSpec:
    return load_stack_file(paths.stack_file(stack))


def evaluate(run: MockRun, spec: EnvironmentSpec) -> program.Deployment:
    """Run the program under ``run``'s mocks and wait for every registration.

    For the openbao flavour, the mocked ``sys/audit`` read answers with the
    spec's devices unless the test already planted another answer.
    """
    if spec.vault.flavour == "openbao":
        run.mocks.call_results.setdefault(
            "vault:generic/getSecret:getSecret",
            audit_answer({d.path: d.type for d in spec.audit.devices}),
        )
    box: dict[str, program.Deployment] = {}
    run.mocks.stack_outputs.setdefault("organization/tradepulse-vault/prod",
                                       {"dr_mirror": prod_mirror()})

    @pulumi.runtime.test
    def go() -> None:
        box["deployment"] = program.build(spec, db_secrets(), provided_values(spec),
                                          program.mirror_source(spec))

    go()
    return box["deployment"]


def names(run: MockRun, typ: str, field: str) -> set[str]:
    return {r.inputs[field] for r in run.mocks.resources if r.typ == typ}


@pytest.mark.parametrize("stack", STACKS)
def test_stack_matches_literal_summary(stack: str) -> None:
    spec = spec_for(stack)
    want = EXPECTED_SUMMARY[stack]
    assert [d.path for d in spec.audit.devices] == want["audit"]
    assert ("break-glass" in spec.policies) is want["break_glass"]
    assert spec.vault.address == want["address"]
    assert spec.vault.flavour == want["flavour"]
    assert {s.name for s in spec.services} == {"execution", "ingestion", "analytics"}
    assert spec.database is not None
    assert {r.name for r in spec.database.roles} == {
        "tradepulse-execution", "tradepulse-ingestion", "tradepulse-analytics"}


@pytest.mark.parametrize("stack", STACKS)
def test_registers_exactly_what_the_spec_declares(stack: str, pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks(stack)
    spec = spec_for(stack)
    evaluate(run, spec)
    assert spec.database is not None
    kv_paths = {m.path for m in spec.kv_mounts}
    assert names(run, MOUNT, "path") == kv_paths | {spec.database.mount}
    assert names(run, KV_CONFIG, "mount") == kv_paths
    assert names(run, POLICY, "name") == set(spec.policies)
    assert names(run, DB_ROLE, "name") == {r.name for r in spec.database.roles}
    assert names(run, OIDC_KEY, "name") == {k.name for k in spec.jwt_issuer_keys}
    assert spec.auth.kubernetes is not None and spec.auth.jwt is not None
    assert names(run, AUTH_BACKEND, "path") == {spec.auth.kubernetes.path}
    assert names(run, JWT_BACKEND, "path") == {spec.auth.jwt.path}
    assert names(run, K8S_ROLE, "roleName") == {
        s.name for s in spec.services if s.kubernetes is not None}
    assert names(run, JWT_ROLE, "roleName") == {r.name for r in spec.auth.jwt.roles}
    assert names(run, AUDIT_HEADER, "name") == {h.name for h in spec.audit.request_headers}
    if spec.vault.flavour == "vault":
        assert names(run, AUDIT, "path") == {d.path for d in spec.audit.devices}
    else:
        assert names(run, AUDIT, "path") == set(), "openbao must not create audit devices"
    assert len(run.mocks.of_type(PROVIDER)) == 1
    assert len(run.mocks.of_type("pulumi:providers:kubernetes")) == 1


@pytest.mark.parametrize("stack", STACKS)
def test_inputs_follow_the_spec(stack: str, pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks(stack)
    spec = spec_for(stack)
    evaluate(run, spec)
    provider = run.mocks.of_type(PROVIDER)["vault"]
    assert provider.inputs["address"] == spec.vault.address
    assert json.loads(provider.inputs["maxLeaseTtlSeconds"]) == (
        spec.vault.provider_token_ttl_seconds)
    assert "token" not in provider.inputs, "the token must come from VAULT_TOKEN only"
    for m in spec.kv_mounts:
        mount = run.mocks.of_type(MOUNT)[f"kv-{m.path}"]
        assert mount.inputs["type"] == "kv" and mount.inputs["options"] == {"version": "2"}
        cfg = run.mocks.of_type(KV_CONFIG)[f"kv-config-{m.path}"]
        assert cfg.inputs["casRequired"] is m.cas_required, cfg.name
        assert cfg.inputs["maxVersions"] == m.max_versions, cfg.name
        assert cfg.inputs["deleteVersionAfter"] == m.delete_version_after_seconds
    assert spec.database is not None
    for role in spec.database.roles:
        got = run.mocks.of_type(DB_ROLE)[f"database-role-{role.name}"].inputs
        assert got["defaultTtl"] == role.default_ttl_seconds, role.name
        assert got["maxTtl"] == role.max_ttl_seconds, role.name
        assert got["creationStatements"] == list(role.creation_statements)
        assert got["revocationStatements"] == list(role.revocation_statements)
        assert got["dbName"] == spec.database.connection.name
    conn = run.mocks.of_type(DB_CONN)[f"database-connection-{spec.database.connection.name}"]
    assert sorted(conn.inputs["allowedRoles"]) == sorted(
        [r.name for r in spec.database.roles] + [r.name for r in spec.database.static_roles])
    assert conn.inputs["pluginName"] == "postgresql-database-plugin"
    for svc in spec.services:
        assert svc.kubernetes is not None
        got = run.mocks.of_type(K8S_ROLE)[f"k8s-role-{svc.name}"].inputs
        assert got["boundServiceAccountNames"] == [svc.kubernetes.service_account]
        assert got["boundServiceAccountNamespaces"] == [svc.kubernetes.namespace]
        assert got["tokenPolicies"] == list(svc.policies)
        assert (got["tokenTtl"], got["tokenMaxTtl"]) == (
            svc.token_ttl_seconds, svc.token_max_ttl_seconds)
    assert spec.auth.jwt is not None
    for role in spec.auth.jwt.roles:
        got = run.mocks.of_type(JWT_ROLE)[f"jwt-role-{role.name}"].inputs
        assert got["boundClaims"] == {
            "repository": role.repository,
            "ref": "refs/pull/*/merge" if role.pull_requests else f"refs/heads/{role.branch}",
            "environment": role.deployment_environment,
        }
        assert got["boundClaimsType"] == ("glob" if role.pull_requests else "string")
        assert got["tokenPolicies"] == list(role.policies)
        assert got["boundAudiences"] == list(role.bound_audiences)
    for key in spec.jwt_issuer_keys:
        got = run.mocks.of_type(OIDC_KEY)[f"oidc-key-{key.name}"].inputs
        assert got["rotationPeriod"] == key.rotation_period_seconds
        assert got["verificationTtl"] == key.verification_ttl_seconds
    for dev in spec.audit.devices if spec.vault.flavour == "vault" else ():
        got = run.mocks.of_type(AUDIT)[f"audit-{dev.path}"].inputs
        assert got["type"] == dev.type and got["options"] == dict(dev.options)
    for name in spec.policies:
        got = run.mocks.of_type(POLICY)[f"policy-{name}"].inputs
        assert got["policy"] == (paths.POLICY_DIR / f"{name}.hcl").read_text()


@pytest.mark.parametrize("stack", STACKS)
def test_every_vault_resource_is_a_component_child_using_the_stack_provider(
    stack: str, pulumi_mocks: Any
) -> None:
    run: MockRun = pulumi_mocks(stack)
    evaluate(run, spec_for(stack))
    provider_urn = next(u for u in run.urns if "pulumi:providers:vault::vault" in u)
    checked = 0
    for reg in run.mocks.resources:
        if reg.typ.startswith(("pulumi:", "tradepulse:")):
            continue
        if not reg.typ.startswith("vault:"):
            # random passwords use random's default provider; delivery uses the k8s provider
            assert reg.typ.startswith(("random:", "kubernetes:")), reg.typ
            continue
        urn = next(u for u in run.urns if u.endswith(f"{reg.typ}::{reg.name}"))
        parent_type = urn.split("::")[2].split("$")[0]
        assert parent_type.startswith("tradepulse:vault:"), f"{urn} has no component parent"
        assert reg.provider is not None and reg.provider.startswith(provider_urn), (
            f"{urn} does not use the stack's explicit Vault provider")
        checked += 1
    assert checked >= 20


def test_database_credentials_stay_secret(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("prod")
    deployment = evaluate(run, spec_for("prod"))
    assert deployment.database is not None
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def go() -> Any:
        postgresql = deployment.database.connection.postgresql  # type: ignore[union-attr]
        return pulumi.Output.all(pulumi.Output.from_input(postgresql.is_secret()),
                                 postgresql).apply(lambda a: seen.update(secret=a[0], v=a[1]))

    go()
    assert seen["secret"] is True, "connection inputs must be secret outputs"
    assert seen["v"]["password"] == CANARY_DB_PASSWORD


def stack_config(stack: str, password: str = CANARY_DB_PASSWORD) -> dict[str, str]:
    import yaml

    doc = yaml.safe_load(paths.stack_file(stack).read_text())
    spec = spec_for(stack)
    provided = {f"tradepulse-vault:{s.config_secret}": json.dumps(
        {k: f"{CANARY_PROVIDED}-{k}" for k in s.keys}) for s in spec.static_secrets
        if s.config_secret}
    return provided | {
        paths.SPEC_CONFIG_KEY: json.dumps(doc["config"][paths.SPEC_CONFIG_KEY]),
        "tradepulse-vault:databaseConnectionUrl": "postgresql://{{username}}:{{password}}@db/tp",
        "tradepulse-vault:databaseRootUsername": "vault_root",
        "tradepulse-vault:databaseRootPassword": password,
    } | ({f"tradepulse-vault:{reviewer}": CANARY_REVIEWER_JWT}
         if (reviewer := reviewer_secret(spec)) else {})


def reviewer_secret(spec: EnvironmentSpec) -> str | None:
    auth = spec.auth.kubernetes
    return auth.token_reviewer_jwt_secret if auth is not None else None


SECRET_KEYS = ["tradepulse-vault:databaseConnectionUrl", "tradepulse-vault:databaseRootUsername",
               "tradepulse-vault:databaseRootPassword", "tradepulse-vault:brokerApiCredentials",
               "tradepulse-vault:marketDataFeedCredentials",
               "tradepulse-vault:kubernetesTokenReviewerJwt"]
CANARY_REVIEWER_JWT = "CANARY-reviewer-jwt-91c4"  # planted; must stay a secret
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for secret values


def run_main() -> dict[str, Any]:
    """Run infra/__main__.py the way Pulumi does; return its exports, resolved."""
    exported: dict[str, Any] = {}
    original = pulumi.export

    @pulumi.runtime.test
    def go() -> Any:
        outputs: dict[str, Any] = {}
        pulumi.export = outputs.__setitem__  # type: ignore[assignment]
        try:
            runpy.run_path(str(paths.REPO_ROOT / "infra" / "__main__.py"), run_name="__main__")
        finally:
            pulumi.export = original
        return pulumi.Output.all(*outputs.values()).apply(
            lambda values: exported.update(zip(outputs, values, strict=True)))

    go()
    return exported


@pytest.mark.parametrize("stack", STACKS)
def test_main_wires_the_stack_and_exports_identifiers_only(stack: str, pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks(stack, stack_config(stack), SECRET_KEYS)
    spec = spec_for(stack)
    run.mocks.call_results["vault:generic/getSecret:getSecret"] = audit_answer(
        {d.path: d.type for d in spec.audit.devices})
    run.mocks.stack_outputs["organization/tradepulse-vault/prod"] = {"dr_mirror": prod_mirror()}
    exported = run_main()
    assert set(exported) >= {"kv_mounts", "policies", "audit_devices", "database_roles",
                             "kubernetes_roles", "jwt_roles", "database_mount"}
    public = {k: v for k, v in exported.items() if k != "dr_mirror"}
    assert CANARY_DB_PASSWORD not in json.dumps(public, default=str)
    assert CANARY_PROVIDED not in json.dumps(public, default=str)
    assert CANARY_REVIEWER_JWT not in json.dumps(exported, default=str)
    assert "gen-" not in json.dumps(public, default=str), "generated values must not be exported"
    assert exported["static_secret_versions"] == {
        s.id: s.version if s.version is not None else prod_versions()[s.id]
        for s in spec.static_secrets}
    assert ("dr_mirror" in exported) is (stack == "prod")
    assert exported["environment"] == stack
    assert sorted(exported["policies"]) == sorted(spec.policies)
    assert exported["audit_devices"] == [d.path for d in spec.audit.devices]
    assert len(run.mocks.resources) > 20


def prod_versions() -> dict[str, int]:
    return {s.id: s.version for s in spec_for("prod").static_secrets if s.version is not None}


def test_openbao_flavour_fails_when_a_declared_audit_device_is_missing(
    pulumi_mocks: Any,
) -> None:
    run: MockRun = pulumi_mocks("local")
    run.mocks.call_results["vault:generic/getSecret:getSecret"] = audit_answer(
        {"file-local": "syslog"})
    with pytest.raises(AuditDeviceMissingError) as info:
        evaluate(run, spec_for("local"))
    message = str(info.value)
    assert "Pulumi.local.yaml" in message and "file-local (file)" in message
    assert "python -m infra.audit_config" in message


@pytest.mark.parametrize("stack", STACKS)
def test_the_token_reviewer_jwt_reaches_vault_as_a_secret(
    stack: str, pulumi_mocks: Any
) -> None:
    spec = spec_for(stack)
    run: MockRun = pulumi_mocks(stack, stack_config(stack), SECRET_KEYS)
    run.mocks.call_results["vault:generic/getSecret:getSecret"] = audit_answer(
        {d.path: d.type for d in spec.audit.devices})
    run.mocks.stack_outputs["organization/tradepulse-vault/prod"] = {"dr_mirror": prod_mirror()}
    run_main()
    config = next(iter(run.mocks.of_type(K8S_CONFIG).values())).inputs
    assert spec.auth.kubernetes is not None
    assert config["kubernetesHost"] == spec.auth.kubernetes.host
    if reviewer_secret(spec) is None:
        assert "tokenReviewerJwt" not in config
        return
    wrapped = config["tokenReviewerJwt"]  # Pulumi's wire form of a secret value
    assert isinstance(wrapped, dict) and SECRET_SIG in wrapped, wrapped
    assert wrapped["value"] == CANARY_REVIEWER_JWT
    assert config["disableLocalCaJwt"] is True


@pytest.mark.parametrize("stack", STACKS)
def test_a_rotation_only_program_registers_only_the_rotated_secret_and_exports_the_same(
    stack: str, pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the engine keeps of every other resource, the exports must keep too.

    Under ``--target`` the stack's outputs are what the program exports: a
    rotation-only program that exported less would drop outputs (the dr stack
    reads prod's ``dr_mirror``), and the whole-stack check would fail.
    """
    spec = spec_for(stack)
    rotated = next(s for s in spec.static_secrets if s.source == "generated")
    urns = kv_urns(spec, stack, rotated.id)
    chosen = rotation_only_secrets(spec, stack, urns)
    assert chosen is not None

    def main(targets: list[str]) -> tuple[dict[str, Any], set[str]]:
        monkeypatch.setenv(ROTATION_ONLY_ENV, " ".join(targets))
        run: MockRun = pulumi_mocks(stack, stack_config(stack), SECRET_KEYS)
        run.mocks.call_results["vault:generic/getSecret:getSecret"] = audit_answer(
            {d.path: d.type for d in spec.audit.devices})
        run.mocks.stack_outputs["organization/tradepulse-vault/prod"] = {
            "dr_mirror": prod_mirror()}
        return run_main(), set(run.urns)

    whole, all_urns = main([])
    only, only_urns = main(urns)
    assert only == whole
    expected = {u for sid in chosen for u in kv_urns(spec, stack, sid)}
    kept = {u for u in only_urns if "::tradepulse:vault:StaticSecrets$" in u}
    assert kept == expected
    others = only_urns - kept
    # (the mocks' URNs of the stack's direct children keep the Stack type in front)
    assert all(u.split("::")[2].split("$")[-1] in ("pulumi:pulumi:Stack", "pulumi:providers:vault",
                                    "tradepulse:vault:StaticSecrets",
                                    "pulumi:pulumi:StackReference") for u in others), others
    assert set(urns) <= only_urns <= all_urns
    assert len(only_urns) < len(all_urns) / 2
