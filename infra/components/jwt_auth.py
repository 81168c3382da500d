"""JWT auth for CI pipelines, bound to repository, branch and deployment environment.

The claim names are those of GitHub Actions OIDC tokens: ``repository``,
``ref`` and ``environment``. A branch role binds ``ref`` to
``refs/heads/<branch>``; a pull-request role (``pull_requests: true``, for
read-only previews) to the glob ``refs/pull/*/merge``, the ref GitHub gives a
``pull_request`` run. Vault then matches every bound claim as a glob, so the
schema keeps ``*`` out of the environment name, and repository names cannot
hold one.
"""

from __future__ import annotations

import pulumi
import pulumi_vault as vault

from kernel.naming import resource_name
from kernel.spec.model import JwtAuth as JwtAuthSpec
from kernel.spec.model import JwtRole

PULL_REQUEST_REF = "refs/pull/*/merge"


def bound_claims(role: JwtRole) -> dict[str, str]:
    """Return the claims a CI token must carry to log in with ``role``."""
    return {
        "repository": role.repository,
        "ref": PULL_REQUEST_REF if role.pull_requests else f"refs/heads/{role.branch}",
        "environment": role.deployment_environment,
    }


def bound_claims_type(role: JwtRole) -> str:
    """Return how Vault matches the bound claims: ``glob`` for a pull-request role."""
    return "glob" if role.pull_requests else "string"


class JwtAuth(pulumi.ComponentResource):
    """Enables the JWT auth method and declares one role per CI pipeline."""

    roles: dict[str, vault.jwt.AuthBackendRole]

    def __init__(
        self, name: str, spec: JwtAuthSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tradepulse:vault:JwtAuth", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.backend = vault.jwt.AuthBackend(
            resource_name("auth", spec.path),
            path=spec.path,
            type="jwt",
            description="CI pipelines (OIDC ID tokens)",
            bound_issuer=spec.bound_issuer,
            oidc_discovery_url=spec.oidc_discovery_url,
            jwks_url=spec.jwks_url,
            jwt_validation_pubkeys=list(spec.validation_pubkeys) or None,
            opts=child,
        )
        self.roles = {
            role.name: vault.jwt.AuthBackendRole(
                resource_name("jwt-role", role.name),
                backend=self.backend.path,
                role_name=role.name,
                role_type="jwt",
                bound_audiences=list(role.bound_audiences),
                bound_claims=bound_claims(role),
                bound_claims_type=bound_claims_type(role),
                user_claim=role.user_claim,
                token_policies=list(role.policies),
                token_ttl=role.token_ttl_seconds,
                token_max_ttl=role.token_max_ttl_seconds,
                opts=child,
            )
            for role in spec.roles
        }
        self.role_names = pulumi.Output.all(*(r.role_name for r in self.roles.values()))
        self.register_outputs({"path": self.backend.path, "roles": self.role_names})
