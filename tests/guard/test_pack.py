"""The pack as a whole: every rule named and mandatory, the real program under mocks,
pulumi_policy's analyzer service and the pack as a process.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

import json
import re
import runpy
import subprocess
from collections import Counter
from typing import Any

import pulumi
import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import (
    EnforcementLevel,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.policy import _PolicyAnalyzerServicer
from tradepulse_guard import (
    PACK_NAME,
    POLICIES,
    facts,
)

from kernel import paths
from kernel.spec import parse_spec
from tests.conftest import CANARY_PROVIDED, STACKS, MockRun, RecordingMocks
from tests.guard.conftest import PACK_DIR
from tests.guard.support import (
    JWT_ROLE,
    K8S_ROLE,
    SDK_SECRET_OUTPUTS,
    Violations,
    raw_spec,
    resource,
    spec,
    stack_resource,
    urn,
)
from tests.infra.test_program import evaluate

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
