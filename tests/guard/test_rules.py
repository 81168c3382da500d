"""The CrossGuard rules, each fed passing and failing resources directly (no engine).

Rules are called with real ``pulumi_policy`` argument objects
(``ResourceValidationArgs``, ``StackValidationArgs``) and the repository's
real specs. The last tests run the real program under Pulumi mocks for every
stack, hand every registered resource to the whole pack exactly as the engine
would (inputs with secrets unwrapped, ``additionalSecretOutputs`` as
registered), and expect no violation, then break the prod spec and expect one.
"""

from __future__ import annotations

import dataclasses
import json
import re
import runpy
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.policy import _PolicyAnalyzerServicer
from tradepulse_guard import (
    PACK_NAME,
    POLICIES,
    acl,
    audit,
    dr_parity,
    facts,
    kv,
    secret_data,
    ttl,
)

from kernel import paths
from kernel.policy_files import read_policy
from kernel.spec import EnvironmentSpec, load_stack_file, parse_spec
from tests.conftest import CANARY_PROVIDED, STACKS, MockRun, RecordingMocks
from tests.guard.conftest import PACK_DIR
from tests.infra.test_program import evaluate

K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
SDK_SECRET_OUTPUTS = ["data", "dataJson", "dataJsonWo"]  # what pulumi-vault's SDK registers


class Violations(list[tuple[str, str | None]]):
    """A ``report_violation`` that remembers what it was told."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))

    @property
    def messages(self) -> list[str]:
        return [m for m, _ in self]


def spec(stack: str) -> EnvironmentSpec:
    return load_stack_file(paths.stack_file(stack))


def options(secret_outputs: list[str] | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(secret_outputs or []), parent=None)


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:prod::tradepulse-vault::{typ}::{name}"


def resource(typ: str, name: str, props: dict[str, Any], *,
             secret_outputs: list[str] | None = None,
             config: dict[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(typ, props, urn(typ, name), name, options(secret_outputs),
                                  None, config)


def stack_resource(typ: str, name: str, props: dict[str, Any],
                   dependencies: list[PolicyResource] | None = None) -> PolicyResource:
    return PolicyResource(typ, props, urn(typ, name), name, options(), None, None,
                          list(dependencies or []), {})


def kv_config(cas: object = True, versions: object = 20) -> dict[str, Any]:
    return {"mount": "secret", "casRequired": cas, "maxVersions": versions,
            "deleteVersionAfter": 0}


# --- the pack ---------------------------------------------------------------------------


def test_every_rule_is_named_described_and_mandatory() -> None:
    names = [p.name for p in POLICIES]
    assert names == [
        "kv-v2-cas-and-version-floor", "kv-v2-mounts-have-cas-config",
        "prod-dr-two-audit-devices", "database-role-ttl-under-cap",
        "auth-role-token-ttl-under-cap", "acl-no-sudo-or-sys-wildcard",
        "kv-secret-data-is-secret", "dr-has-everything-prod-has"]
    for policy in POLICIES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", policy.name), policy.name
        assert policy.description.endswith("."), policy.name
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        assert isinstance(policy, ResourceValidationPolicy | StackValidationPolicy)


def test_the_pack_entry_point_loads_and_runs_in_the_repository_venv() -> None:
    # Loaded as a module (not "__main__"), it must not start the analyzer server.
    namespace = runpy.run_path(str(PACK_DIR / "__main__.py"), run_name="pack_under_test")
    assert namespace["POLICIES"] is POLICIES
    assert namespace["PACK_NAME"] == "tradepulse-vault-guard"
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python",
                                  "options": {"toolchain": "pip", "virtualenv": "../../.venv"}}
    assert (PACK_DIR / project["runtime"]["options"]["virtualenv"] / "bin" / "python").exists()


# --- kv-v2-cas-and-version-floor ---------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_kv_cas_and_floor_pass_in_prod_and_dr(stack: str) -> None:
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(resource(facts.KV_BACKEND, "kv-config-secret", kv_config()),
                                   seen, spec(stack))
    assert seen == []


@pytest.mark.parametrize(("props", "expected"), [
    (kv_config(cas=False), ["kv-config-secret: cas_required must be true in prod (rotations "
                            "write with check-and-set)"]),
    (kv_config(versions=5), ["kv-config-secret: max_versions is 5; prod keeps at least 10 "
                             "versions"]),
    ({"mount": "secret"}, ["kv-config-secret: cas_required must be true in prod (rotations "
                           "write with check-and-set)",
                           "kv-config-secret: max_versions is unset; prod keeps at least 10 "
                           "versions"]),
])
def test_kv_cas_and_floor_fail(props: dict[str, Any], expected: list[str]) -> None:
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(resource(facts.KV_BACKEND, "kv-config-secret", props),
                                   seen, spec("prod"))
    assert seen.messages == expected


def test_kv_floor_can_only_be_raised_by_policy_config() -> None:
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(
        resource(facts.KV_BACKEND, "kv", kv_config(versions=20),
                 config={"min_max_versions": 30}), seen, spec("dr"))
    assert seen.messages == ["kv: max_versions is 20; dr keeps at least 30 versions"]
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(
        resource(facts.KV_BACKEND, "kv", kv_config(versions=5), config={"min_max_versions": 2}),
        seen, spec("dr"))
    assert seen.messages == ["kv: max_versions is 5; dr keeps at least 10 versions"]


def test_kv_rules_hold_only_prod_and_dr() -> None:
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(resource(facts.KV_BACKEND, "kv", kv_config(False, 2)),
                                   seen, spec("staging"))
    assert seen == []


def test_strictness_is_the_specs_flag_not_the_stack_name() -> None:
    weak = resource(facts.KV_BACKEND, "kv", kv_config(False, 2))
    prod_eu = dataclasses.replace(spec("staging"), environment="prod-eu", strict=True)
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(weak, seen, prod_eu)
    assert seen.messages[0] == ("kv: cas_required must be true in prod-eu (rotations write "
                                "with check-and-set)")
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(weak, seen, dataclasses.replace(spec("prod"), strict=False))
    assert seen == []
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary")]), seen, prod_eu)
    assert len(seen.messages) == 1


# --- kv-v2-mounts-have-cas-config --------------------------------------------------------


def kv_mount(path: str = "secret") -> PolicyResource:
    return stack_resource(facts.MOUNT, f"kv-{path}",
                          {"path": path, "type": "kv", "options": {"version": "2"}})


def test_a_configured_kv_mount_passes() -> None:
    mount = kv_mount()
    config = stack_resource(facts.KV_BACKEND, "kv-config-secret", kv_config(), [mount])
    database = stack_resource(facts.MOUNT, "database-database",
                              {"path": "database", "type": "database"})
    seen = Violations()
    kv.kv_v2_mounts_have_cas_config(StackValidationArgs([mount, config, database]), seen,
                                    spec("prod"))
    assert seen == []


def test_a_kv_mount_without_config_fails() -> None:
    bare = kv_mount("scratch")
    seen = Violations()
    kv.kv_v2_mounts_have_cas_config(
        StackValidationArgs([kv_mount(), stack_resource(facts.KV_BACKEND, "kv-config-secret",
                                                        kv_config()), bare]),
        seen, spec("prod"))
    assert seen == [("kv-scratch: KV v2 mount 'scratch' has no kv.SecretBackendV2 config, so "
                     "cas_required and max_versions are Vault's defaults (off, 10)", bare.urn)]


# --- prod-dr-two-audit-devices -----------------------------------------------------------


def audit_device(path: str, typ: str = "file") -> PolicyResource:
    return stack_resource(facts.AUDIT, f"audit-{path}", {"path": path, "type": typ})


def test_two_vault_audit_devices_pass() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary"), audit_device("syslog-secondary",
                                                                        "syslog")]),
        seen, spec("prod"))
    assert seen == []


def test_one_vault_audit_device_fails() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary")]), seen, spec("dr"))
    assert seen.messages == ["dr creates 1 vault.Audit device(s) (file-primary); it needs at "
                             "least 2 so one failing device cannot block Vault"]


def test_openbao_audit_devices_count_the_spec_and_need_the_verifier() -> None:
    local = spec("local")  # the openbao flavour, one declared device
    as_prod = dataclasses.replace(local, environment="prod", strict=True)
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(StackValidationArgs([]), seen, as_prod)
    assert seen.messages == [
        "prod (openbao) has no tradepulse:vault:AuditDevices component, so nothing verifies "
        "that the server has its audit devices",
        "prod (openbao) declares 1 audit device(s) (file-local); it needs at least 2"]
    two = dataclasses.replace(as_prod, audit=dataclasses.replace(
        local.audit, devices=spec("prod").audit.devices))
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([stack_resource(facts.AUDIT_COMPONENT, "audit", {})]), seen, two)
    assert seen == []


def test_staging_may_have_one_audit_device() -> None:
    seen = Violations()
    audit.prod_and_dr_have_two_audit_devices(
        StackValidationArgs([audit_device("file-primary")]), seen, spec("staging"))
    assert seen == []


# --- database-role-ttl-under-cap ---------------------------------------------------------


def db_role(max_ttl: object, default_ttl: object = 3600) -> ResourceValidationArgs:
    return resource(facts.DATABASE_ROLE, "database-role-tradepulse-execution",
                    {"name": "tradepulse-execution", "maxTtl": max_ttl,
                     "defaultTtl": default_ttl})


def test_database_role_under_the_cap_passes() -> None:
    seen = Violations()
    ttl.database_role_ttl_under_cap(db_role(86400), seen, spec("prod"))
    assert seen == []


@pytest.mark.parametrize(("stack", "role", "expected"), [
    ("prod", db_role(86401), "database-role-tradepulse-execution: max_ttl 86401 s exceeds "
                             "limits.max_database_ttl_seconds (86400 s)"),
    ("local", db_role(86400), "database-role-tradepulse-execution: max_ttl 86400 s exceeds "
                              "limits.max_database_ttl_seconds (7200 s)"),
    ("prod", db_role(0), "database-role-tradepulse-execution: max_ttl is not set (0 is "
                         "Vault's 32-day default); set it at most 86400 s "
                         "(limits.max_database_ttl_seconds)"),
    ("prod", db_role(3600, 7200), "database-role-tradepulse-execution: default_ttl 7200 s "
                                  "exceeds max_ttl 3600 s"),
])
def test_database_role_over_the_cap_fails(stack: str, role: ResourceValidationArgs,
                                          expected: str) -> None:
    seen = Violations()
    ttl.database_role_ttl_under_cap(role, seen, spec(stack))
    assert seen.messages == [expected]


# --- auth-role-token-ttl-under-cap -------------------------------------------------------


def test_auth_roles_under_the_cap_pass() -> None:
    for typ in (K8S_ROLE, JWT_ROLE):
        seen = Violations()
        ttl.auth_role_token_ttl_under_cap(
            resource(typ, "role", {"tokenTtl": 3600, "tokenMaxTtl": 28800}), seen, spec("prod"))
        assert seen == [], typ


@pytest.mark.parametrize(("props", "expected"), [
    ({"tokenTtl": 3600, "tokenMaxTtl": 28801},
     "k8s-role-execution: token_max_ttl 28801 s exceeds limits.max_token_ttl_seconds (28800 s)"),
    ({"tokenTtl": 3600},
     "k8s-role-execution: token_max_ttl is not set (0 is Vault's 32-day default); set it at "
     "most 28800 s (limits.max_token_ttl_seconds)"),
    ({"tokenTtl": 3600, "tokenMaxTtl": 7200, "tokenPeriod": 3600},
     "k8s-role-execution: token_period 3600 s makes periodic tokens, which renew forever past "
     "every cap"),
    ({"tokenTtl": 3600, "tokenMaxTtl": 7200, "tokenExplicitMaxTtl": 90000},
     "k8s-role-execution: token_explicit_max_ttl 90000 s exceeds limits.max_token_ttl_seconds "
     "(28800 s)"),
])
def test_auth_role_over_the_cap_fails(props: dict[str, Any], expected: str) -> None:
    seen = Violations()
    ttl.auth_role_token_ttl_under_cap(resource(K8S_ROLE, "k8s-role-execution", props), seen,
                                      spec("prod"))
    assert seen.messages == [expected]


# --- acl-no-sudo-or-sys-wildcard ---------------------------------------------------------


def acl_policy(name: str, hcl: str) -> ResourceValidationArgs:
    return resource(facts.ACL_POLICY, f"policy-{name}", {"name": name, "policy": hcl})


@pytest.mark.parametrize("name", sorted(p.stem for p in paths.POLICY_DIR.glob("*.hcl")))
def test_every_repository_policy_passes(name: str) -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(acl_policy(name, read_policy(name)), seen)
    assert seen == []


@pytest.mark.parametrize(("hcl", "expected"), [
    ('path "secret/data/*" {\n  capabilities = ["read", "sudo"]\n}\n',
     ["policy auditor: path 'secret/data/*' grants sudo; only break-glass may"]),
    ('path "sys/*" {\n  capabilities = ["read"]\n}\n',
     ["policy auditor: path 'sys/*' is a wildcard over sys/ granting read; only break-glass "
      "may"]),
    ('path "*" {\n  capabilities = ["list"]\n}\n',
     ["policy auditor: path '*' is a wildcard over sys/ granting list; only break-glass may"]),
    ('path "+/mounts" {\n  capabilities = ["read"]\n}\n',
     ["policy auditor: path '+/mounts' is a wildcard over sys/ granting read; only "
      "break-glass may"]),
    ('path "sys/audit" {\n  capabilities = ["sudo", "read"]\n}\n',
     ["policy auditor: path 'sys/audit' grants sudo; only break-glass may"]),
    ('path "sys/mounts" {\n  capabilities = ["teleport"]\n}\n',
     ["policy auditor: path \"sys/mounts\" has unknown capabilities ['teleport']; an "
      "unreadable policy cannot be reviewed"]),
])
def test_sudo_or_a_sys_wildcard_fails(hcl: str, expected: list[str]) -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(acl_policy("auditor", hcl), seen)
    assert seen.messages == expected


def test_break_glass_is_exempt_and_deny_rules_grant_nothing() -> None:
    seen = Violations()
    acl.acl_no_sudo_or_sys_wildcard(
        acl_policy("break-glass", 'path "*" {\n  capabilities = ["read", "sudo"]\n}\n'), seen)
    acl.acl_no_sudo_or_sys_wildcard(
        acl_policy("auditor", 'path "sys/*" {\n  capabilities = ["deny"]\n}\n'), seen)
    assert seen == []


@pytest.mark.parametrize(("path", "wild"), [
    ("*", True), ("s*", True), ("sys*", True), ("sys/*", True), ("sys/+/tune", True),
    ("+/*", True), ("sys/policies/acl/*", False), ("sys/mounts", False),
    ("secret/*", False), ("sysadmin/*", False), ("auth/+/role/*", False),
])
def test_what_counts_as_a_sys_wildcard(path: str, wild: bool) -> None:
    assert acl.is_sys_wildcard(path) is wild


# --- kv-secret-data-is-secret ------------------------------------------------------------


def kv_secret(secret_outputs: list[str]) -> ResourceValidationArgs:
    return resource(facts.KV_SECRET, "secret-secret-services-execution-broker-api",
                    {"mount": "secret", "name": "services/execution/broker-api", "cas": 3,
                     "dataJson": json.dumps({"API_KEY": CANARY_PROVIDED})},
                    secret_outputs=secret_outputs)


def test_secret_data_marked_secret_passes() -> None:
    seen = Violations()
    secret_data.kv_secret_data_is_secret(kv_secret(SDK_SECRET_OUTPUTS), seen)
    assert seen == []


def test_secret_data_not_marked_secret_fails_without_showing_it() -> None:
    seen = Violations()
    secret_data.kv_secret_data_is_secret(kv_secret(["data"]), seen)
    assert seen.messages == [
        "secret-secret-services-execution-broker-api: dataJson not marked secret "
        "(additional_secret_outputs); the secret's value would be stored in state in plain "
        "text"]
    assert CANARY_PROVIDED not in repr(seen)


# --- dr-has-everything-prod-has ----------------------------------------------------------


def test_dr_with_everything_prod_has_passes() -> None:
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, spec("dr"),
                                         spec("prod"))
    assert seen == []


def test_dr_missing_a_policy_role_or_mirror_fails() -> None:
    dr = spec("dr")
    assert dr.database is not None
    broken = dataclasses.replace(
        dr, policies=tuple(p for p in dr.policies if p != "break-glass"),
        database=dataclasses.replace(dr.database, roles=dr.database.roles[:2]),
        static_secrets=tuple(s for s in dr.static_secrets if s.mirror_of is None))
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, broken, spec("prod"))
    assert seen.messages == [
        "Pulumi.dr.yaml: lacks prod's ACL policy 'break-glass'",
        "Pulumi.dr.yaml: lacks prod's database role 'tradepulse-analytics'",
        "Pulumi.prod.yaml: secret/services/execution/session-signing-key is published to dr "
        "(mirror_to_dr) but Pulumi.dr.yaml does not mirror it: dr is behind prod",
        "Pulumi.prod.yaml: secret/services/ingestion/market-data-feed is published to dr "
        "(mirror_to_dr) but Pulumi.dr.yaml does not mirror it: dr is behind prod"]


def test_dr_parity_holds_only_the_dr_stack() -> None:
    seen = Violations()
    dr_parity.dr_has_everything_prod_has(StackValidationArgs([]), seen, spec("staging"),
                                         spec("prod"))
    assert seen == []


# --- the spec comes from the stack config ------------------------------------------------


@pytest.fixture
def stack_config() -> Iterator[dict[str, str]]:
    config: dict[str, str] = {}
    yield config
    pulumi.runtime.set_all_config({}, [])


def raw_spec(stack: str) -> Any:
    return yaml.safe_load(paths.stack_file(stack).read_text())["config"][paths.SPEC_CONFIG_KEY]


def test_rules_read_the_spec_from_stack_config(stack_config: dict[str, str]) -> None:
    # What pulumi_policy does with the PULUMI_CONFIG the engine passes the pack.
    pulumi.runtime.set_all_config({paths.SPEC_CONFIG_KEY: json.dumps(raw_spec("local"))}, [])
    seen = Violations()
    ttl.database_role_ttl_under_cap(db_role(86400), seen)
    assert seen.messages == ["database-role-tradepulse-execution: max_ttl 86400 s exceeds "
                             "limits.max_database_ttl_seconds (7200 s)"]
    pulumi.runtime.set_all_config({paths.SPEC_CONFIG_KEY: json.dumps(raw_spec("prod"))}, [])
    seen = Violations()
    ttl.database_role_ttl_under_cap(db_role(86400), seen)
    assert seen == []


def test_a_missing_or_invalid_spec_is_a_violation_not_a_pass(
    stack_config: dict[str, str]
) -> None:
    pulumi.runtime.set_all_config({}, [])
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(resource(facts.KV_BACKEND, "kv", kv_config()), seen)
    assert seen.messages == [
        "cannot check: the stack config has no tradepulse-vault:spec: run the pack with "
        "`pulumi preview --policy-pack policies/guard` on a tradepulse-vault stack"]
    broken = raw_spec("prod") | {"limits": {"max_token_ttl_seconds": 3600}}
    pulumi.runtime.set_all_config({paths.SPEC_CONFIG_KEY: json.dumps(broken)}, [])
    seen = Violations()
    ttl.auth_role_token_ttl_under_cap(resource(K8S_ROLE, "r", {"tokenMaxTtl": 60}), seen)
    assert seen.messages == [
        "cannot check: the stack's spec does not validate: Pulumi.prod.yaml: "
        "tradepulse-vault:spec.limits.max_database_ttl_seconds: required key is missing"]


# --- the whole pack on the real program, under mocks --------------------------------------


class SecretOutputsMonitor(pulumi.runtime.mocks.MockMonitor):
    """A mock monitor that also keeps each resource's ``additionalSecretOutputs``."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.secret_outputs: dict[tuple[str, str], list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:
        self.secret_outputs[(request.type, request.name)] = list(
            request.additionalSecretOutputs)
        return super().RegisterResource(request)


def run_pack_on_program(stack: str, raw: Any) -> tuple[Violations, Counter[str]]:
    """Run the program for ``raw`` under mocks, then every policy as the analyzer does.

    Returns the violations and how many resources of each type were judged.
    """
    mocks = RecordingMocks()
    monitor = SecretOutputsMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="tradepulse-vault", stack=stack, preview=False,
                             organization="organization", monitor=monitor)
    # The engine passes the stack config to the pack; the rules read the spec from it.
    pulumi.runtime.set_all_config({paths.SPEC_CONFIG_KEY: json.dumps(raw)}, [])
    evaluate(MockRun(mocks, monitor), parse_spec(raw, source=f"Pulumi.{stack}.yaml",
                                                 stack=stack))
    seen = Violations()
    stack_resources = []
    for registered in mocks.resources:
        props = deserialize_properties(dict(registered.inputs))  # secrets unwrapped, as served
        # Read resources (the dr stack's StackReference) are not registered: no options.
        marked = monitor.secret_outputs.get((registered.typ, registered.name), [])
        args = resource(registered.typ, registered.name, props, secret_outputs=marked)
        stack_resources.append(stack_resource(registered.typ, registered.name, props))
        for policy in POLICIES:
            if isinstance(policy, ResourceValidationPolicy):
                policy.validate(args, seen)
    for policy in POLICIES:
        if isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(stack_resources), seen)
    return seen, Counter(r.typ for r in mocks.resources)


@pytest.mark.parametrize("stack", STACKS)
def test_the_real_program_passes_the_whole_pack(stack: str,
                                                stack_config: dict[str, str]) -> None:
    seen, judged = run_pack_on_program(stack, raw_spec(stack))
    assert seen == []
    env = spec(stack)
    # The rules met every resource they are about, in the numbers the spec declares.
    assert judged[facts.KV_BACKEND] == len(env.kv_mounts)
    assert judged[facts.KV_SECRET] == len(env.static_secrets)
    assert judged[facts.ACL_POLICY] == len(env.policies)
    assert judged[facts.DATABASE_ROLE] == len(env.database.roles if env.database else ())
    assert judged[K8S_ROLE] + judged[JWT_ROLE] == len(env.services) + len(
        env.auth.jwt.roles if env.auth.jwt else ())
    assert judged[facts.AUDIT] + judged[facts.AUDIT_COMPONENT] >= 1


def test_the_pack_catches_a_loosened_prod_program(stack_config: dict[str, str]) -> None:
    raw = raw_spec("prod")
    raw["kv_mounts"][0]["cas_required"] = False
    raw["audit"]["devices"] = raw["audit"]["devices"][:1]
    seen, _ = run_pack_on_program("prod", raw)
    assert seen.messages == [
        "kv-config-secret: cas_required must be true in prod (rotations write with "
        "check-and-set)",
        "prod creates 1 vault.Audit device(s) (file-primary); it needs at least 2 so one "
        "failing device cannot block Vault"]


# --- through pulumi_policy's own analyzer service (what the engine calls over gRPC) --------


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    json_format.ParseDict(value, out)
    return out


@pytest.fixture
def analyzer(stack_config: dict[str, str]) -> Any:
    """pulumi_policy's servicer for this pack, after the engine's ConfigureStack call."""
    facts.install_stack_config_hook()
    facts.install_stack_config_hook()  # idempotent
    servicer = _PolicyAnalyzerServicer(PACK_NAME, "1.0.0", POLICIES,
                                       EnforcementLevel.MANDATORY)

    def configure(stack: str, raw: Any | None = None) -> Any:
        request = analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=stack, project="tradepulse-vault", organization="organization",
            config={paths.SPEC_CONFIG_KEY: json.dumps(raw or raw_spec(stack))})
        servicer.ConfigureStack(request, None)
        return servicer

    return configure


def test_configure_stack_delivers_the_spec_to_the_rules(analyzer: Any) -> None:
    servicer = analyzer("local")
    request = analyzer_pb2.AnalyzeRequest(
        type=facts.DATABASE_ROLE, name="database-role-tradepulse-execution",
        urn=urn(facts.DATABASE_ROLE, "database-role-tradepulse-execution"),
        properties=struct({"name": "tradepulse-execution", "maxTtl": 86400,
                           "defaultTtl": 300}),
        options=analyzer_pb2.AnalyzerResourceOptions())
    [diagnostic] = servicer.Analyze(request, None).diagnostics
    assert diagnostic.policyName == "database-role-ttl-under-cap"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert diagnostic.message.endswith(
        "database-role-tradepulse-execution: max_ttl 86400 s exceeds "
        "limits.max_database_ttl_seconds (7200 s)")
    analyzer("prod")  # a prod stack's caps allow the same role
    assert list(servicer.Analyze(request, None).diagnostics) == []


def test_secret_values_pass_through_the_analyzer_unprinted(analyzer: Any) -> None:
    servicer = analyzer("prod")
    secret = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG,
              "value": json.dumps({"API_KEY": CANARY_PROVIDED})}

    def analyze(marked: list[str]) -> list[Any]:
        request = analyzer_pb2.AnalyzeRequest(
            type=facts.KV_SECRET, name="secret-broker-api",
            urn=urn(facts.KV_SECRET, "secret-broker-api"),
            properties=struct({"mount": "secret", "name": "services/execution/broker-api",
                               "cas": 3, "dataJson": secret}),
            options=analyzer_pb2.AnalyzerResourceOptions(additionalSecretOutputs=marked))
        return list(servicer.Analyze(request, None).diagnostics)

    assert analyze(SDK_SECRET_OUTPUTS) == []
    [diagnostic] = analyze([])
    assert diagnostic.policyName == "kv-secret-data-is-secret"
    assert CANARY_PROVIDED not in str(diagnostic)


def test_stack_policies_run_through_the_analyzer(analyzer: Any) -> None:
    servicer = analyzer("prod")
    one_device = analyzer_pb2.AnalyzerResource(
        type=facts.AUDIT, name="audit-file-primary", urn=urn(facts.AUDIT, "audit-file-primary"),
        properties=struct({"path": "file-primary", "type": "file"}),
        options=analyzer_pb2.AnalyzerResourceOptions())
    response = servicer.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[one_device]),
                                     None)
    assert [d.policyName for d in response.diagnostics] == ["prod-dr-two-audit-devices"]


# --- the pack as a process, speaking the analyzer protocol ---------------------------------


def test_the_pack_process_serves_the_analyzer_protocol() -> None:
    """``run-pack`` (the binary-plugin entry point) starts the pack as the engine would."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2_grpc

    process = subprocess.Popen([str(PACK_DIR / "run-pack"), "127.0.0.1:1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().strip())  # the plugin handshake: its port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == PACK_NAME
            assert [p.name for p in info.policies] == [p.name for p in POLICIES]
            assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
            stub.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(
                stack="local", project="tradepulse-vault",
                config={paths.SPEC_CONFIG_KEY: json.dumps(raw_spec("local"))}), timeout=30)
            response = stub.Analyze(analyzer_pb2.AnalyzeRequest(
                type=facts.DATABASE_ROLE, name="database-role-x",
                urn=urn(facts.DATABASE_ROLE, "database-role-x"),
                properties=struct({"name": "x", "maxTtl": 86400, "defaultTtl": 300}),
                options=analyzer_pb2.AnalyzerResourceOptions()), timeout=30)
        assert [d.policyName for d in response.diagnostics] == ["database-role-ttl-under-cap"]
        assert "exceeds limits.max_database_ttl_seconds (7200 s)" in \
            response.diagnostics[0].message
    finally:
        process.terminate()
        process.wait(timeout=10)
