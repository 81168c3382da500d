"""``classify_stack`` on the real prod stack file, one mutation at a time (pure, no git).

Each mutation edits a parsed copy of ``Pulumi.prod.yaml`` and checks the one change a
reviewer is shown: its class, who or what, the field, and old -> new.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from rotation.review.spec_changes import classify_stack
from tests.conftest import REPO_ROOT

PROD = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text())
KEY = "tradepulse-vault:spec"
PROVIDED_KEY = "warehouseHmacValue"  # the config key a provided secret would name


def spec(doc: Any) -> Any:
    return doc["config"][KEY]


def secret(doc: Any, path: str) -> Any:
    return next(s for s in spec(doc)["static_secrets"] if s["path"] == path)


def role(doc: Any, name: str) -> Any:
    return next(r for r in spec(doc)["auth"]["jwt"]["roles"] if r["name"] == name)


Mutation = Callable[[Any], None]
CASES: list[tuple[str, Mutation, tuple[str, str, str, str, str]]] = [
    ("database-removed", lambda d: spec(d).pop("database"),
     ("destructive", "database engine", "mount", "database", "removed")),
    ("kv-mount-removed", lambda d: spec(d)["kv_mounts"].clear(),
     ("destructive", "KV mount secret", "entry", "present", "removed")),
    ("auth-removed", lambda d: spec(d)["auth"].pop("kubernetes"),
     ("destructive", "Kubernetes auth", "method", "enabled", "removed")),
    ("auth-path", lambda d: spec(d)["auth"]["kubernetes"].update(path="k8s"),
     ("destructive", "Kubernetes auth", "path", "kubernetes", "k8s")),
    ("db-role-removed", lambda d: spec(d)["database"]["roles"].pop(),
     ("destructive", "database role tradepulse-analytics", "entry", "present", "removed")),
    ("policy-unloaded", lambda d: spec(d)["policies"].remove("auditor"),
     ("destructive", "policy auditor", "loaded", "loaded", "removed")),
    ("audit-device-removed", lambda d: spec(d)["audit"]["devices"].pop(),
     ("weakening", "audit device syslog-secondary", "entry", "present", "removed")),
    ("audit-header-hmac", lambda d: spec(d)["audit"]["request_headers"][0].update(hmac=True),
     ("weakening", "audited request header X-Request-Id", "hmac", "false", "true")),
    ("provided-instead-of-generated", lambda d: secret(d, "services/analytics/warehouse-hmac")
     .update(source="provided", config_secret=PROVIDED_KEY, generator=None)
     or secret(d, "services/analytics/warehouse-hmac").pop("generator"),
     ("weakening", "secret secret/services/analytics/warehouse-hmac", "source", "generated",
      "provided")),
    ("rotated-less-often", lambda d: secret(d, "services/analytics/warehouse-hmac")
     .update(rotation_interval_seconds=31536000),
     ("weakening", "secret secret/services/analytics/warehouse-hmac",
      "rotation_interval_seconds", "15552000 s (180d)", "31536000 s (365d)")),
    ("new-consumer", lambda d: secret(d, "services/analytics/warehouse-hmac")
     .update(consumers=["analytics", "execution"]),
     ("privilege", "secret secret/services/analytics/warehouse-hmac", "consumers",
      "[analytics]", "[analytics, execution]")),
    ("revocation", lambda d: spec(d)["database"]["roles"][0].update(
        revocation_statements=["SELECT 1;"]),
     ("weakening", "database role tradepulse-execution", "revocation_statements",
      "[REVOKE tradepulse_execution FROM \"{{name}}\";, DROP ROLE IF EXISTS \"{{name}}\";]",
      "[SELECT 1;]")),
    ("grants", lambda d: spec(d)["database"]["roles"][0]["creation_statements"].append(
        "GRANT tradepulse_analytics TO \"{{name}}\";"),
     ("privilege", "database role tradepulse-execution", "creation_statements", "", "")),
    ("unverified-connection", lambda d: spec(d)["database"]["connection"].update(
        verify_connection=False),
     ("weakening", "database connection", "verify_connection", "true", "false")),
    ("signing-algorithm", lambda d: spec(d)["jwt_issuer_keys"][0].update(algorithm="HS256"),
     ("weakening", "JWT issuer key tradepulse-adapters", "algorithm", "RS256", "HS256")),
    ("audience", lambda d: role(d, "ci-rotate-prod").update(
        bound_audiences=["https://vault.tradepulse.internal", "sts.amazonaws.com"]),
     ("privilege", "CI role ci-rotate-prod", "bound_audiences", "", "")),
    ("repository", lambda d: role(d, "ci-rotate-prod").update(repository="someone/fork"),
     ("privilege", "CI role ci-rotate-prod", "repository", "tradepulse/tradepulse-vault",
      "someone/fork")),
    ("ci-role-ttl-lowered", lambda d: role(d, "ci-rotate-prod").update(token_ttl_seconds=600),
     ("privilege", "CI role ci-rotate-prod", "token_ttl_seconds", "900 s (15m)", "600 s (10m)")),
    ("provider-token", lambda d: spec(d)["vault"].update(provider_token_ttl_seconds=7200),
     ("privilege", "Vault", "provider_token_ttl_seconds", "3600 s (1h)", "7200 s (2h)")),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), CASES, ids=[c[0] for c in CASES])
def test_one_mutation_one_change(name: str, mutate: Mutation,
                                 expected: tuple[str, str, str, str, str]) -> None:
    new = copy.deepcopy(PROD)
    mutate(new)
    changes = classify_stack("prod", PROD, new, sudo_holders={"break-glass"})
    found = [c for c in changes if (c.subject, c.field) == expected[1:3]]
    assert found, [c.render() for c in changes]
    kind, _, _, old, shown = expected
    assert found[0].kind == kind, found[0].render()
    if old or shown:
        assert (found[0].old, found[0].new) == (old, shown)


def test_a_lower_ttl_is_not_a_gain() -> None:
    new = copy.deepcopy(PROD)
    role(new, "ci-rotate-prod").update(token_ttl_seconds=600)
    [change] = classify_stack("prod", PROD, new)
    assert (change.kind, change.gain) == ("privilege", False)


def test_a_removed_stack_is_destructive_and_an_unchanged_one_has_no_changes() -> None:
    [change] = classify_stack("prod", PROD, None)
    assert (change.kind, change.subject, change.new) == ("destructive", "stack", "removed")
    assert classify_stack("prod", PROD, copy.deepcopy(PROD)) == []


def test_the_capability_matrix_loosened_tightened_and_extended() -> None:
    from rotation.review.file_changes import expectation_changes

    text = (REPO_ROOT / "policies/acl/expectations.yaml").read_text()
    deny = "      - {path: auth/token/create}\n"
    assert deny in text
    [dropped] = expectation_changes(text, text.replace(deny, "", 1))
    assert (dropped.kind, dropped.subject) == ("weakening", "capability matrix: "
                                                            "tradepulse-execution")
    more = text.replace(deny, deny + "      - {path: sys/raw/core}\n", 1)
    [tightened] = expectation_changes(text, more)
    assert (tightened.kind, tightened.gain) == ("configuration", False)
    sudo = text.replace("holders: [break-glass]", "holders: [break-glass, auditor]", 1)
    [holders] = expectation_changes(text, sudo)
    assert (holders.kind, holders.field) == ("weakening", "sudo")
    assert holders.new.startswith("holders [break-glass, auditor]")


def test_credential_version_fields_are_left_to_the_plan() -> None:
    old, new = copy.deepcopy(PROD), copy.deepcopy(PROD)
    spec(old)["database"]["roles"][0]["lease_generation"] = 1
    spec(new)["database"]["roles"][0]["lease_generation"] = 2
    spec(old)["jwt_issuer_keys"][0]["version"] = 3
    spec(new)["jwt_issuer_keys"][0]["version"] = 4
    assert classify_stack("prod", old, new) == []
