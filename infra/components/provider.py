"""The explicit Vault provider built from the spec (address, namespace, flavour).

The token is deliberately not an input: pulumi-vault reads ``VAULT_TOKEN``
from the environment at run time, so it is never in config or state.
"""

from __future__ import annotations

import pulumi
import pulumi_vault as vault

from kernel.spec.model import VaultTarget


def vault_provider(
    target: VaultTarget, opts: pulumi.ResourceOptions | None = None
) -> vault.Provider:
    """Return the provider every Vault resource of this stack uses."""
    return vault.Provider(
        "vault",
        address=target.address,
        namespace=target.namespace,
        # The provider's child token outlives the apply (default is 20 minutes).
        max_lease_ttl_seconds=target.provider_token_ttl_seconds,
        # Vault and OpenBao both answer sys/seal-status with their version, so
        # the provider can feature-gate; the flavour only changes audit handling.
        skip_child_token=False,
        opts=opts,
    )
