"""Static secrets under mocks: CAS follows the declared version; values stay secret."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from kernel.secret_values import SecretValueError, parse_provided
from kernel.spec import EnvironmentSpec
from tests.conftest import CANARY_PROVIDED, STACKS, MockRun
from tests.infra.test_program import evaluate, prod_mirror, spec_for

SECRET_V2 = "vault:kv/secretBackendV2:SecretBackendV2"
KV_SECRET = "vault:kv/secretV2:SecretV2"
RANDOM = "random:index/randomPassword:RandomPassword"


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for secret values


def secrets_by_path(run: MockRun) -> dict[str, dict[str, Any]]:
    """Every SecretV2's inputs, with dataJson unwrapped after checking it arrived as a secret."""
    out = {}
    for r in run.mocks.resources:
        if r.typ != KV_SECRET:
            continue
        inputs = dict(r.inputs)
        wrapped = inputs["dataJson"]
        assert isinstance(wrapped, dict) and SECRET_SIG in wrapped, (
            f"{r.name}: dataJson must reach the engine as a secret")
        inputs["dataJson"] = wrapped["value"]
        out[f"{inputs['mount']}/{inputs['name']}"] = inputs
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_each_static_secret_is_written_with_cas_one_below_its_version(
    stack: str, pulumi_mocks: Any
) -> None:
    run: MockRun = pulumi_mocks(stack)
    spec = spec_for(stack)
    evaluate(run, spec)
    written = secrets_by_path(run)
    assert set(written) == {s.id for s in spec.static_secrets}
    mirrored = prod_mirror()
    for secret in spec.static_secrets:
        version = secret.version or mirrored[secret.id]["version"]
        assert written[secret.id]["cas"] == version - 1, secret.id
        assert written[secret.id]["options"] == {"cas": str(version - 1)}, secret.id
        assert json.loads(written[secret.id]["dataJson"]).keys() == set(secret.keys)
        assert written[secret.id]["deleteAllVersions"] is False


def bumped(spec: EnvironmentSpec, secret_id: str) -> EnvironmentSpec:
    secrets = tuple(
        s.model_copy(update={"version": (s.version or 0) + 1}) if s.id == secret_id else s
        for s in spec.static_secrets)
    return spec.model_copy(update={"static_secrets": secrets})


def test_generated_value_changes_if_and_only_if_the_version_changes(pulumi_mocks: Any) -> None:
    spec = spec_for("prod")
    target = "secret/services/execution/session-signing-key"
    before = pulumi_mocks("prod")
    evaluate(before, spec)
    after = pulumi_mocks("prod")
    evaluate(after, bumped(spec, target))
    old, new = secrets_by_path(before), secrets_by_path(after)
    assert old[target]["dataJson"] != new[target]["dataJson"]
    assert new[target]["cas"] == old[target]["cas"] + 1
    for other in set(old) - {target}:
        assert old[other] == new[other], f"{other} changed although its version did not"


def test_generator_settings_follow_the_spec(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("prod")
    spec = spec_for("prod")
    evaluate(run, spec)
    passwords = {r.name: r.inputs for r in run.mocks.resources if r.typ == RANDOM}
    signing = passwords["value-secret-services-execution-session-signing-key-signing_key"]
    assert signing["length"] == 64 and signing["special"] is False
    assert signing["keepers"] == {"version": "9"}
    hmac = passwords["value-secret-services-analytics-warehouse-hmac-hmac_key"]
    assert hmac["special"] is True and hmac["overrideSpecial"] == "-_"
    assert len(passwords) == sum(len(s.keys) for s in spec.static_secrets
                                 if s.source == "generated")


def test_provided_value_comes_from_config_and_stays_secret(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("prod")
    deployment = evaluate(run, spec_for("prod"))
    data = json.loads(secrets_by_path(run)["secret/services/execution/broker-api"]["dataJson"])
    assert data == {"API_KEY": f"{CANARY_PROVIDED}-API_KEY",
                    "API_SECRET": f"{CANARY_PROVIDED}-API_SECRET"}
    seen: dict[str, Any] = {}

    @pulumi.runtime.test
    def go() -> Any:
        kv = deployment.static_secrets.secrets["secret/services/execution/broker-api"]
        return pulumi.Output.all(
            pulumi.Output.from_input(kv.data_json.is_secret()),
            pulumi.Output.from_input(deployment.static_secrets.dr_mirror.is_secret()),
        ).apply(lambda a: seen.update(data=a[0], mirror=a[1]))

    go()
    assert seen == {"data": True, "mirror": True}


def test_dr_mirrors_take_value_and_version_from_prod(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("dr")
    evaluate(run, spec_for("dr"))
    written = secrets_by_path(run)
    for secret_id, entry in prod_mirror().items():
        assert written[secret_id]["cas"] == entry["version"] - 1
        assert json.loads(written[secret_id]["dataJson"]) == entry["data"]
    refs = [r for r in run.mocks.resources if r.typ == "pulumi:pulumi:StackReference"]
    assert [r.name for r in refs] == ["organization/tradepulse-vault/prod"]


def test_dr_mirror_missing_from_prod_says_what_to_do(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("dr")
    run.mocks.stack_outputs["organization/tradepulse-vault/prod"] = {"dr_mirror": {}}
    # The engine wraps it ("While processing input ..."); the message is what matters.
    with pytest.raises(ValueError, match=r"Pulumi\.dr\.yaml: .*set mirror_to_dr: true in "
                       r"Pulumi\.prod\.yaml and apply prod first"):
        evaluate(run, spec_for("dr"))


@pytest.mark.parametrize(("raw", "fragment"), [
    ("not json " + CANARY_PROVIDED, "is not a JSON object"),
    (json.dumps({"API_KEY": CANARY_PROVIDED}), "has keys ['API_KEY'], declared"),
    (json.dumps({"API_KEY": CANARY_PROVIDED, "API_SECRET": 5}), "must be a JSON object of strings"),
])
def test_bad_provided_value_is_refused_without_echoing_it(raw: str, fragment: str) -> None:
    with pytest.raises(SecretValueError) as info:
        parse_provided("secret/x", ["API_KEY", "API_SECRET"], raw, "Pulumi.prod.yaml: config c")
    assert fragment in str(info.value)
    assert CANARY_PROVIDED not in str(info.value)
    assert str(info.value).startswith("Pulumi.prod.yaml: config c")


GET_V2 = "vault:kv/getSecretV2:getSecretV2"


def test_a_rollback_writes_the_restored_versions_data_read_from_vault(pulumi_mocks: Any) -> None:
    spec = spec_for("prod")
    target = "secret/services/execution/session-signing-key"
    rolled = bumped(spec, target)
    rolled = rolled.model_copy(update={"static_secrets": tuple(
        s.model_copy(update={"restores": 7}) if s.id == target else s
        for s in rolled.static_secrets)})
    run: MockRun = pulumi_mocks("prod")
    # Vault's answer: the latest version is still 9 (not applied yet), so version 7 is read.
    run.mocks.call_results[GET_V2] = {"version": 9, "data": {"SIGNING_KEY": "restored-v7"}}
    evaluate(run, rolled)
    written = secrets_by_path(run)[target]
    assert (written["cas"], json.loads(written["dataJson"])) == (9, {"SIGNING_KEY": "restored-v7"})
    reads = [dict(c.args) for c in run.mocks.calls if c.token == GET_V2]
    assert {(r["mount"], r["name"], r.get("version")) for r in reads} == {
        ("secret", "services/execution/session-signing-key", None),
        ("secret", "services/execution/session-signing-key", 7)}


def test_a_prod_rollback_reaches_dr_through_the_mirror_output(pulumi_mocks: Any) -> None:
    target = "secret/services/execution/session-signing-key"  # mirror_to_dr in prod
    rolled = bumped(spec_for("prod"), target)
    rolled = rolled.model_copy(update={"static_secrets": tuple(
        s.model_copy(update={"restores": 7}) if s.id == target else s
        for s in rolled.static_secrets)})
    run: MockRun = pulumi_mocks("prod")
    run.mocks.call_results[GET_V2] = {"version": 9, "data": {"SIGNING_KEY": "restored-v7"}}
    deployment = evaluate(run, rolled)
    published: dict[str, Any] = {}

    @pulumi.runtime.test
    def go() -> Any:
        return deployment.static_secrets.dr_mirror.apply(published.update)

    go()
    # prod publishes the new version with version 7's data, read from prod's history...
    assert published[target] == {"version": 10, "data": {"SIGNING_KEY": "restored-v7"}}
    # ...and dr, reading that output, writes it as its version 10 with cas 9.
    dr_run: MockRun = pulumi_mocks("dr")
    dr_run.mocks.stack_outputs["organization/tradepulse-vault/prod"] = {
        "dr_mirror": {**prod_mirror(), target: published[target]}}
    evaluate(dr_run, spec_for("dr"))
    written = secrets_by_path(dr_run)[target]
    assert (written["cas"], json.loads(written["dataJson"])) == (9, {"SIGNING_KEY": "restored-v7"})
    assert not [c for c in dr_run.mocks.calls if c.token == GET_V2]  # not dr's own history
