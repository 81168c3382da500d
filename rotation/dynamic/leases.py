"""Vault calls on leases that the manager and the commands share (ids only, never values)."""

from __future__ import annotations

import hvac
import hvac.exceptions

from rotation.errors import CheckFailed
from rotation.vault import vault_errors

# What the database plugins put in a 500 when the database, not Vault, failed. The
# driver's text is never repeated (it names the database user); only the reason is.
CREDENTIALS_REFUSED = "the database refused Vault's credentials"
_DATABASE_REASONS = (
    ("connection refused", "connection refused"),
    ("password authentication failed", CREDENTIALS_REFUSED),
    ("no such host", "the database host name does not resolve"),
    ("i/o timeout", "the database did not answer in time"),
    ("timeout", "the database did not answer in time"),
    ("failed to connect", "cannot connect to the database"),
    ("unable to start transaction", "cannot open a database transaction"),
    ("sqlstate", "the database rejected a statement"),
    ("pq: ", "the database rejected a statement"),
)


def database_failure(message: str) -> str | None:
    """Return why the database behind Vault failed, if a 500's message says it did."""
    lowered = message.lower()
    return next((reason for marker, reason in _DATABASE_REASONS if marker in lowered), None)


def revoke_lease(client: hvac.Client, lease_id: str) -> None:
    """Revoke ``lease_id`` (Vault answers 204 even for a lease that is already gone)."""
    with vault_errors(client.url, f"revoking lease {lease_id}"):
        client.sys.revoke_lease(lease_id)


def lease_is_live(client: hvac.Client, lease_id: str) -> bool | None:
    """Return whether Vault still knows ``lease_id``; ``None`` if the token may not look."""
    try:
        with vault_errors(client.url, f"looking up lease {lease_id}"):
            try:
                client.sys.read_lease(lease_id)
            except hvac.exceptions.InvalidRequest:  # "invalid lease": revoked or expired
                return False
    except CheckFailed as exc:
        if "permission denied" in str(exc):
            return None
        raise
    return True


class LeaseGone(Exception):
    """Vault no longer knows the lease (revoked, expired, or lost with its storage)."""
