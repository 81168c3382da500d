"""JWT issuer keys as Vault identity OIDC keys, rotated by Vault itself.

Why identity OIDC keys rather than transit keys: Vault signs the JWTs itself
(identity tokens), rotates the key on ``rotation_period`` and keeps publishing
the previous public key at ``/v1/identity/oidc/.well-known/keys`` for
``verification_ttl``, so verifiers never see a gap. A transit key would need
our own JWT signing code and our own JWKS publishing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_vault as vault

from infra.naming import resource_name
from infra.spec.model import JwtIssuerKey


class JwtIssuerKeys(pulumi.ComponentResource):
    """Declares each identity OIDC signing key with its rotation period."""

    keys: dict[str, vault.identity.OidcKey]

    def __init__(
        self, name: str, keys: Sequence[JwtIssuerKey], opts: pulumi.ResourceOptions | None = None
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
        self.names = pulumi.Output.all(*(k.name for k in self.keys.values()))
        self.register_outputs({"names": self.names})
