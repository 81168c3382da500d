"""tradepulse_guard.kv: KV v2 mounts keep check-and-set and a version floor in strict stacks.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import (
    PolicyResource,
    StackValidationArgs,
)
from tradepulse_guard import (
    audit,
    facts,
    kv,
)

from tests.guard.support import (
    Violations,
    audit_device,
    kv_config,
    resource,
    spec,
    stack_resource,
)

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
    prod_eu = spec("staging").model_copy(update={"environment": "prod-eu", "strict": True})
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(weak, seen, prod_eu)
    assert seen.messages[0] == ("kv: cas_required must be true in prod-eu (rotations write "
                                "with check-and-set)")
    seen = Violations()
    kv.kv_v2_cas_and_version_floor(weak, seen, spec("prod").model_copy(update={"strict": False}))
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
