"""tradepulse_guard.secret_data: KV secret data is registered as secret and never shown.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

import json

from pulumi_policy import (
    ResourceValidationArgs,
)
from tradepulse_guard import (
    facts,
    secret_data,
)

from tests.conftest import CANARY_PROVIDED
from tests.guard.support import (
    SDK_SECRET_OUTPUTS,
    Violations,
    resource,
)

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
