"""tradepulse_guard.ttl: database and auth role TTLs stay under the caps.

Rules are called with real ``pulumi_policy`` argument objects and the
repository's real specs (no engine), unless a test says otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi_policy import (
    ResourceValidationArgs,
)
from tradepulse_guard import (
    ttl,
)

from tests.guard.support import (
    JWT_ROLE,
    K8S_ROLE,
    Violations,
    db_role,
    resource,
    spec,
)

# --- database-role-ttl-under-cap ---------------------------------------------------------


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
