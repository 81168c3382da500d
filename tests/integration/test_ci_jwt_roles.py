"""The CI JWT roles on a real OpenBao: who can log in with GitHub-shaped OIDC tokens.

The roles are created with exactly the bound claims and claim type the
JwtAuth component declares (``infra.components.jwt_auth``), from the staging
stack file; tokens are signed with a key the test generates. A pull-request
run (``ref: refs/pull/<n>/merge``) must reach the read-only preview role and
nothing else; a run on ``main`` in the deploy environment must reach the
rotate role and not the preview one.
"""

from __future__ import annotations

import time
from typing import Any

import hvac
import hvac.exceptions
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from infra.components.jwt_auth import bound_claims, bound_claims_type
from kernel import paths
from kernel.spec import load_stack_file

pytestmark = pytest.mark.integration

ISSUER = "https://token.actions.githubusercontent.com"
MOUNT = "jwt-ci"


@pytest.fixture
def ci_login(openbao: Any) -> Any:
    """Mount JWT auth with staging's roles; return ``login(role, **claims) -> token | None``."""
    spec = load_stack_file(paths.stack_file("staging"))
    assert spec.auth.jwt is not None
    key = RSAKey.generate_key(2048)
    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    client.sys.enable_auth_method("jwt", path=MOUNT)
    client.auth.jwt.configure(jwt_validation_pubkeys=[key.as_pem(private=False).decode()],
                              bound_issuer=ISSUER, path=MOUNT)
    roles = {r.name: r for r in spec.auth.jwt.roles}
    for role in roles.values():
        client.auth.jwt.create_role(
            role.name, user_claim=role.user_claim, allowed_redirect_uris=None,
            bound_audiences=list(role.bound_audiences), bound_claims=bound_claims(role),
            bound_claims_type=bound_claims_type(role), token_policies=list(role.policies),
            token_ttl=role.token_ttl_seconds, path=MOUNT)

    def login(role: str, **claims: str) -> str | None:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": roles[role].bound_audiences[0], "iat": now,
                "nbf": now - 5, "exp": now + 300, "repository": "tradepulse/tradepulse-vault",
                **claims}
        token = jwt.encode({"alg": "RS256"}, body, key)
        try:
            answer = hvac.Client(url=openbao.address).auth.jwt.jwt_login(role, token,
                                                                         path=MOUNT)
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            return None
        return str(answer["auth"]["client_token"])

    return login


def test_a_pull_request_run_reaches_only_the_preview_role(ci_login: Any) -> None:
    pr = {"ref": "refs/pull/42/merge", "environment": "staging-preview"}
    assert ci_login("ci-preview-staging", **pr)
    assert not ci_login("ci-rotate-staging", **pr)
    assert not ci_login("ci-rotate-staging", ref="refs/pull/42/merge", environment="staging")


def test_a_main_run_in_the_deploy_environment_reaches_only_the_rotate_role(ci_login: Any
                                                                           ) -> None:
    assert ci_login("ci-rotate-staging", ref="refs/heads/main", environment="staging")
    assert not ci_login("ci-preview-staging", ref="refs/heads/main", environment="staging")
    assert not ci_login("ci-rotate-staging", ref="refs/heads/feature", environment="staging")


@pytest.mark.parametrize("claims", [
    {"ref": "refs/pull/42/merge", "environment": "staging"},  # not the preview environment
    {"ref": "refs/heads/main", "environment": "staging-preview"},  # a push, not a PR
    {"ref": "refs/pull/42/head", "environment": "staging-preview"},
    {"ref": "refs/pull/42/merge", "environment": "staging-preview",
     "repository": "someone/fork"},
])
def test_the_preview_role_refuses_other_runs(ci_login: Any, claims: dict[str, str]) -> None:
    assert not ci_login("ci-preview-staging", **claims)
