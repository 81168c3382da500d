"""Apply-time rotations: one Vault write that happens when, and only when, a version changes.

Rotating a JWT issuer key, the database root credential or a static role, and
revoking a role's leases, are each one write to a Vault endpoint
(``identity/oidc/key/<k>/rotate``, ``<db>/rotate-root/<conn>``,
``<db>/rotate-role/<role>``, ``sys/leases/revoke-prefix/<db>/creds/<role>``).
The mechanism is pulumi-vault's ``vault.generic.Endpoint`` (the bridged
``vault_generic_endpoint``, an SDKv2 resource of terraform-provider-vault 5.9.0,
so the toolchain's vault plugin 7.14.0 has it), keyed on the declared version:

* its ``data_json`` carries the version (:func:`kernel.spec.credentials.rotation_payload`),
  so a bump is an *update* of this resource and the provider writes the
  endpoint once; an unchanged version is no diff at all, so
  ``pulumi preview --expect-no-changes`` stays green after the apply;
* ``disable_read``: these endpoints cannot be read back, and a refresh must not
  invent drift; ``disable_delete``: removing the resource (or a destroy) must not
  send a DELETE to a rotate endpoint;
* a retried apply is idempotent: Pulumi records the new ``data_json`` once the
  write succeeded, so a retry after a failure elsewhere writes the rotation
  only if it has not happened yet (should the engine die between Vault's
  answer and its checkpoint, the retry repeats that one rotation: one more
  new key or password, never an old one back);
* version 1 is the credential as created (or seeded), so no resource exists for
  it: creating a stack never rotates anything, and the first bump (1 -> 2)
  creates the resource, which is the write.

A Pulumi dynamic provider could do the same, but it would run our own HTTP
client inside the engine and serialise Python code into the state; the bridged
resource uses the provider's client, token and namespace handling as every
other resource here does. The version also reaches Vault's audit log in the
request body (Vault ignores the unknown field), which is what ``verify``
finds there.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_vault as vault

from kernel.naming import resource_name
from kernel.spec.credentials import FIRST_VERSION, Credential, rotation_payload


def rotation_action(
    credential: Credential,
    opts: pulumi.ResourceOptions,
    *,
    extra: dict[str, object] | None = None,
) -> vault.generic.Endpoint | None:
    """Return the Endpoint that performs ``credential``'s rotation, or None at version 1.

    ``extra`` are real parameters of the endpoint (e.g. ``sync`` for revoke-prefix);
    ``opts`` must make it depend on the resource it rotates.
    """
    if credential.version <= FIRST_VERSION:
        return None
    body = {**(extra or {}), **rotation_payload(credential.version)}
    return vault.generic.Endpoint(
        resource_name("rotate", credential.kind, *credential.id.split("/")),
        path=credential.action_path,
        data_json=json.dumps(body, sort_keys=True),
        disable_read=True,
        disable_delete=True,
        opts=opts,
    )
