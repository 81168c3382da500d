"""rotation/interrupted.py: recording a killed update's landed KV write in an exported state.

The deployments here have the shape ``pulumi stack export --show-secrets``
printed for the local stack after a killed ``pulumi up`` (Pulumi 3.274): the
resource still holds version 1's inputs, the pending operation version 2's.
tests/e2e/test_apply_faults.py runs the same edit on a real stack.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from rotation.interrupted import NotAdoptable, adopt, pending_writes, provider_normalised

URN = ("urn:pulumi:local::tradepulse-vault::tradepulse:vault:StaticSecrets$"
       "vault:kv/secretV2:SecretV2::secret-secret-services-execution-session-signing-key")
OTHER = URN.replace("session-signing-key", "broker-api")
SIG = {"sig-key-of-pulumi": "sig-value-of-pulumi"}  # stands in for Pulumi's marker entry
CANARY_OLD = "CANARY-old-value-91c2"
CANARY_NEW = "CANARY-new-value-<&>-5d0e"


def secret(value: Any) -> dict[str, str]:
    return {**SIG, "plaintext": json.dumps(value)}


def kv_inputs(value: str, cas: int) -> dict[str, Any]:
    return {"mount": "secret", "name": "services/execution/session-signing-key",
            "dataJson": secret(json.dumps({"SIGNING_KEY": value}, sort_keys=True)),
            "cas": cas, "options": {"cas": str(cas)}, "deleteAllVersions": False}


def killed_deployment(operation: str = "updating") -> dict[str, Any]:
    old = kv_inputs(CANARY_OLD, 0)
    outputs = {**old, "dataJson": secret(json.dumps({"SIGNING_KEY": CANARY_OLD},
                                                    separators=(",", ":"))),
               "metadata": {"version": "1"}, "id": "secret/data/services/execution/x"}
    return {"resources": [
        {"urn": URN, "type": "vault:kv/secretV2:SecretV2", "inputs": old, "outputs": outputs},
        {"urn": OTHER, "type": "vault:kv/secretV2:SecretV2", "inputs": {"cas": 0},
         "outputs": {"cas": 0}},
    ], "pending_operations": [
        {"resource": {"urn": URN, "type": "vault:kv/secretV2:SecretV2",
                      "inputs": kv_inputs(CANARY_NEW, 1), "outputs": {}},
         "type": operation}]}


def test_provider_normalised_is_what_gos_json_marshal_writes() -> None:
    data = json.loads('{"b": "x<y&z>\\"q\\\\ \\b\\f\\n\\t\\u0001", "a": "é\\u2028\\u2029", '
                      '"C": "plain"}')
    # Printed by json.Marshal of the same map (go1.26.8), as the provider's StateFunc does.
    assert provider_normalised(data) == ('{"C":"plain","a":"é\\u2028\\u2029","b":"x\\u003cy'
                                         '\\u0026z\\u003e\\"q\\\\ \\b\\f\\n\\t\\u0001"}')


def test_pending_writes_reads_the_data_being_written() -> None:
    (write,) = pending_writes(killed_deployment())
    assert write.urn == URN and write.operation == "updating"
    assert write.data == {"SIGNING_KEY": CANARY_NEW}


def test_adopt_records_the_pending_inputs_and_clears_the_pending_operations() -> None:
    deployment = killed_deployment()
    untouched = copy.deepcopy(deployment["resources"][1])
    assert adopt(deployment, {URN}) == [URN]
    resource = deployment["resources"][0]
    assert resource["inputs"] == kv_inputs(CANARY_NEW, 1)
    outputs = resource["outputs"]
    assert outputs["cas"] == 1 and outputs["options"] == {"cas": "1"}
    # dataJson as the provider stores it (compact, <&> escaped), still a secret object.
    assert outputs["dataJson"] == secret('{"SIGNING_KEY":"CANARY-new-value-\\u003c\\u0026'
                                         '\\u003e-5d0e"}')
    assert outputs["metadata"] == {"version": "1"}  # refreshed by the next read, not invented
    assert deployment["pending_operations"] == []
    assert deployment["resources"][1] == untouched


def test_a_write_that_did_not_land_is_only_cleared() -> None:
    deployment = killed_deployment()
    before = copy.deepcopy(deployment["resources"])
    assert adopt(deployment, set()) == []
    assert deployment["resources"] == before  # pulumi up writes it, with cas = 1
    assert deployment["pending_operations"] == []


def test_a_pending_create_is_refused_and_nothing_changes() -> None:
    deployment = killed_deployment("creating")
    before = copy.deepcopy(deployment)
    with pytest.raises(NotAdoptable, match="pending create"):
        adopt(deployment, {URN})
    assert deployment == before


def test_a_landed_urn_without_a_pending_update_is_refused() -> None:
    deployment = killed_deployment()
    with pytest.raises(NotAdoptable, match="no pending update"):
        adopt(deployment, {OTHER})


def test_still_encrypted_data_is_refused_without_showing_it() -> None:
    deployment = killed_deployment()
    deployment["pending_operations"][0]["resource"]["inputs"]["dataJson"] = {
        **SIG, "ciphertext": "v1:abc:def"}
    with pytest.raises(NotAdoptable) as refused:
        pending_writes(deployment)
    assert "--show-secrets" in str(refused.value)
    assert "v1:abc" not in str(refused.value) and CANARY_NEW not in str(refused.value)


def test_non_string_values_are_refused() -> None:
    deployment = killed_deployment()
    deployment["pending_operations"][0]["resource"]["inputs"]["dataJson"] = secret(
        json.dumps({"SIGNING_KEY": 1}))
    with pytest.raises(NotAdoptable, match="not an object of strings"):
        pending_writes(deployment)
