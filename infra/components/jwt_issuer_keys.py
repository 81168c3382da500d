"""JWT issuer keys as Vault identity OIDC keys, rotated by Vault and by reviewed bumps.

Why identity OIDC keys rather than transit keys: Vault signs the JWTs itself
(identity tokens), rotates the key on ``rotation_period`` and keeps publishing
the previous public key at ``/v1/identity/oidc/.well-known/keys`` for
``verification_ttl``, so verifiers never see a gap. A transit key would need
our own JWT signing code and our own JWKS publishing.

Vault publishes a key in the JWKS only while a role signs with it, so each key
gets an issuer role of the same name (what adapters request tokens from, and
what makes ``verify`` able to see the key ids). A bump of the key's
``version`` rotates it now (:mod:`infra.components.rotation_action`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_vault as vault

from infra.components.rotation_action import rotation_action
from kernel.naming import resource_name
from kernel.spec.credentials import Credential, jwt_key_id
from kernel.spec.model import JwtIssuerKey

# Tokens an issuer role signs live at most this long (the shortest verification_ttl allowed).
ISSUER_ROLE_TTL_SECONDS = 60 * 60  # 1h


class JwtIssuerKeys(pulumi.ComponentResource):
    """Declares each identity OIDC signing key with its rotation period."""

    keys: dict[str, vault.identity.OidcKey]
    roles: dict[str, vault.identity.OidcRole]
    rotations: dict[str, vault.generic.Endpoint]

    def __init__(
        self,
        name: str,
        keys: Sequence[JwtIssuerKey],
        rotations: Mapping[str, Credential] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tradepulse:vault:JwtIssuerKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.keys = {
            key.name: vault.identity.OidcKey(
                resource_name("oidc-key", key.name),
                name=key.name,
                algorithm=key.algorithm,
                rotation_period=key.rotation_period_seconds,
                verification_ttl=key.verification_ttl_seconds,
                allowed_client_ids=list(key.allowed_client_ids) or None,
                opts=child,
            )
            for key in keys
        }
        self.roles = {
            key.name: vault.identity.OidcRole(
                resource_name("oidc-role", key.name),
                name=key.name,
                key=self.keys[key.name].name,
                ttl=min(ISSUER_ROLE_TTL_SECONDS, key.verification_ttl_seconds),
                opts=child,
            )
            for key in keys
        }
        self.rotations = {}
        for key in keys:
            credential = (rotations or {}).get(jwt_key_id(key.name))
            action = None if credential is None else rotation_action(
                credential, pulumi.ResourceOptions(parent=self, depends_on=[
                    self.keys[key.name], self.roles[key.name]]))
            if action is not None:
                self.rotations[key.name] = action
        self.names = pulumi.Output.all(*(k.name for k in self.keys.values()))
        self.register_outputs({"names": self.names})
