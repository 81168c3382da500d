"""``revoke``: the runbook's failure handling - revoke a lease and prove it is gone.

``revoke --lease-id ID`` looks the lease up, revokes it, and looks it up
again: Vault answers "revoked" (204) even for an id it never knew, so without
the lookups a mistyped id would look like success while the real lease lives
on. An id that is not live is reported as a failed check (exit 1) and nothing
is changed. The token comes from ``--token-env`` (or the ``--env-file``).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from rotation.dynamic.leases import lease_is_live, revoke_lease
from rotation.errors import BadInput, CheckFailed
from rotation.output import Result
from rotation.stacks import add_address_arguments, stackless_address
from rotation.vault import VaultTarget, connect

NAME = "revoke"
HELP = "revoke a lease (e.g. a partial rotation's) and verify that it is gone"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``--lease-id``, ``--address`` and ``--token-env``."""
    parser.add_argument("--lease-id", required=True,
                        help="the lease to revoke, e.g. database/creds/<role>/<id>")
    add_address_arguments(parser)
    parser.add_argument("--token-env", default="VAULT_TOKEN", metavar="VAR",
                        help="environment variable holding the Vault token (default: VAULT_TOKEN)")


def _render(payload: dict[str, Any]) -> Any:
    def render(out: TextIO) -> None:
        out.write(f"revoked lease {payload['lease_id']}\n")
        if payload["verified"]:
            out.write("  verified: Vault no longer knows the lease\n")
        else:
            out.write("  not verified: this token may not read sys/leases/lookup\n")
    return render


def run(args: argparse.Namespace) -> Result:
    """Revoke ``--lease-id`` and check that Vault no longer knows it."""
    lease_id = str(args.lease_id).strip()
    if not lease_id:
        raise BadInput("--lease-id is empty")
    address = stackless_address(args)
    client = connect(VaultTarget(address, args.token_env))
    live = lease_is_live(client, lease_id)
    if live is False:
        raise CheckFailed(
            f"lease {lease_id} is not live (already revoked, expired, or the id is wrong); "
            "nothing was revoked",
            hint="list live leases with `bao list sys/leases/lookup/<mount>/creds/<role>`",
        )
    revoke_lease(client, lease_id)
    verified = False
    if live is True:
        if lease_is_live(client, lease_id):
            raise CheckFailed(f"lease {lease_id} is still live after revocation",
                              hint="retry; check the server log for revocation errors")
        verified = True
    payload = {"ok": True, "lease_id": lease_id, "revoked": True, "verified": verified}
    return Result(payload, _render(payload))
