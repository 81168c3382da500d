"""tradepulse_guard.facts: the rules read the spec from the stack config; a bad spec is a violation.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

import json

import pulumi
from tradepulse_guard import (
    facts,
    kv,
    ttl,
)

from kernel import paths
from tests.guard.support import (
    K8S_ROLE,
    Violations,
    db_role,
    kv_config,
    raw_spec,
    resource,
)

# --- the spec comes from the stack config ------------------------------------------------


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
