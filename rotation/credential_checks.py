"""Live checks for the non-KV credential classes: what preflight observes and verify proves.

KV v2 secrets prove a rotation by their live version. The other classes have
no version in Vault, so each is proven by what it changes:

* a JWT issuer key: the JWKS (``identity/oidc/.well-known/keys``) has a key id
  it did not have before the apply and still holds every one it had (the
  previous public key stays published for ``verification_ttl``);
* the database root credential: the engine still issues credentials, which it
  can only do by logging in to the database with the rotated root password;
* a static role: Vault's ``last_vault_rotation`` of the role is the apply's
  rotation (not before the rotate request, and not what preflight saw);
* a lease generation: no lease under ``<mount>/creds/<role>`` was issued before
  the revoke request (``sys/leases/lookup``).

"Before the apply" comes from the preflight's ``--json`` output
(``credentials[].before``, passed to ``verify --before``) and from the audit
log's record of the rotation request, which carries the declared version.
What cannot be observed is reported as a failure, never assumed. Passwords
are never read here: static roles are read through ``static-roles/<name>``
(metadata), and issued credentials are revoked at once, keeping only the
lease id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import hvac
import hvac.exceptions

from kernel.naming import database_creds_path
from kernel.spec.credentials import Credential
from kernel.spec.model import EnvironmentSpec
from rotation.audit_log import AuditEvent, rotation_evidence
from rotation.vault import json_body, response_data, vault_errors

_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text: str) -> datetime:
    """Parse Vault's RFC 3339 timestamps (nanoseconds, ``Z``) as aware UTC datetimes."""
    value = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _started(event: AuditEvent) -> datetime:
    """When Vault received the request (its request entry; the response time otherwise)."""
    return parse_time(event.request_time or event.time)


def jwks_kids(client: hvac.Client) -> list[str]:
    """Return the key ids Vault publishes at ``identity/oidc/.well-known/keys``."""
    answer = client.adapter.get("/v1/identity/oidc/.well-known/keys")
    body = json_body(answer)
    return sorted(str(k.get("kid")) for k in body.get("keys", []) if isinstance(k, dict))


def _static_role_name(cred: Credential) -> tuple[str, str]:
    mount, _, name = cred.id.partition("/static-roles/")
    return mount, name


def last_vault_rotation(client: hvac.Client, cred: Credential) -> str | None:
    """Return a static role's ``last_vault_rotation`` (metadata only), None if it has none."""
    mount, name = _static_role_name(cred)
    try:
        answer = client.adapter.get(f"/v1/{mount}/static-roles/{name}")
    except hvac.exceptions.InvalidPath:
        return None
    value = response_data(answer).get("last_vault_rotation")
    return str(value) if value else None


def _lease_target(cred: Credential) -> tuple[str, str]:
    mount, _, role = cred.id.partition("/roles/")
    return mount, role


def lease_issue_times(client: hvac.Client, cred: Credential) -> dict[str, str]:
    """Return ``{lease_id: issue_time}`` for every live lease of a database role."""
    mount, role = _lease_target(cred)
    prefix = database_creds_path(mount, role)
    out: dict[str, str] = {}
    for key in live_leases(client, mount, role):
        lease_id = f"{prefix}/{key}"
        looked = client.adapter.put("/v1/sys/leases/lookup", json={"lease_id": lease_id})
        out[lease_id] = str(response_data(looked).get("issue_time", ""))
    return out


def live_leases(client: hvac.Client, mount: str, role: str) -> list[str]:
    """Return the ids (after the role's prefix) listed under ``sys/leases/lookup/<creds path>``."""
    try:
        answer = client.adapter.list(f"/v1/sys/leases/lookup/{database_creds_path(mount, role)}")
    except hvac.exceptions.InvalidPath:
        return []
    return [str(key) for key in response_data(answer).get("keys", [])]


def observe(client: hvac.Client, address: str, creds: Iterable[Credential]) -> dict[str, Any]:
    """Return what preflight records before the apply, for ``verify --before`` (no values)."""
    out: dict[str, Any] = {}
    for cred in creds:
        with vault_errors(address, f"observing {cred.id}"):
            if cred.kind == "jwt-key":
                out[cred.id] = {"jwks_kids": jwks_kids(client)}
            elif cred.kind == "db-static-role":
                out[cred.id] = {"last_vault_rotation": last_vault_rotation(client, cred)}
            else:  # root and lease generation are judged by the audited request alone
                out[cred.id] = {}
    return out


def _issue_and_revoke(client: hvac.Client, spec: EnvironmentSpec) -> dict[str, Any]:
    """Issue credentials from the connection's first dynamic role, then revoke them."""
    assert spec.database is not None
    role = spec.database.roles[0].name
    creds = client.secrets.database.generate_credentials(role, mount_point=spec.database.mount)
    lease_id = str(creds["lease_id"])
    client.sys.revoke_lease(lease_id)
    return {"issued_from": role, "lease_id": lease_id, "revoked": True}


Check = tuple[dict[str, Any], list[str]]


def _verify_jwt_key(client: hvac.Client, cred: Credential, before: dict[str, Any]) -> Check:
    now = jwks_kids(client)
    evidence: dict[str, Any] = {"jwks_kids": now}
    old = before.get("jwks_kids")
    if old is None:
        return evidence, [f"{cred.id}: cannot tell a new key id without the JWKS seen before "
                          "the apply (pass --before <preflight --json output>)"]
    added, kept = set(now) - set(old), set(old) & set(now)
    evidence.update(new_kids=sorted(added), kept_kids=sorted(kept))
    failures = [] if added else [f"{cred.id}: the JWKS has no new key id"]
    if kept != set(old):
        failures.append(f"{cred.id}: the JWKS dropped key ids {sorted(set(old) - kept)} that "
                        "verifiers still need")
    return evidence, failures


def _verify_root(client: hvac.Client, cred: Credential, spec: EnvironmentSpec) -> Check:
    try:
        return {"issued": _issue_and_revoke(client, spec)}, []
    except hvac.exceptions.VaultError as exc:
        return {}, [f"{cred.id}: the engine cannot issue credentials after the root rotation "
                    f"({type(exc).__name__})"]


def _verify_static_role(
    client: hvac.Client, cred: Credential, before: dict[str, Any], event: AuditEvent | None
) -> Check:
    last = last_vault_rotation(client, cred)
    old_last = before.get("last_vault_rotation")
    evidence = {"last_vault_rotation": last}
    if last is None:
        return evidence, [f"{cred.id}: the static role does not exist"]
    if old_last is None:
        return evidence, [f"{cred.id}: cannot tell the apply's rotation without the last "
                          "rotation seen before it (pass --before <preflight --json output>)"]
    if parse_time(last) <= parse_time(old_last):
        return evidence, [f"{cred.id}: last rotation {last} is not after the one preflight saw "
                          f"({old_last})"]
    if event is not None and parse_time(last) < _started(event):
        return evidence, [f"{cred.id}: last rotation {last} is before the rotation request at "
                          f"{event.request_time}"]
    return evidence, []


def _verify_leases(client: hvac.Client, cred: Credential, event: AuditEvent | None) -> Check:
    leases = lease_issue_times(client, cred)
    evidence: dict[str, Any] = {"leases": len(leases)}
    if event is None:
        return evidence, [f"{cred.id}: without the revoke request's time, leases older than "
                          "the apply cannot be told apart"]
    cutoff = _started(event)
    old_leases = sorted(lid for lid, issued in leases.items()
                        if not issued or parse_time(issued) < cutoff)
    evidence["older_than_apply"] = len(old_leases)
    if old_leases:
        return evidence, [f"{cred.id}: {len(old_leases)} lease(s) issued before the revoke at "
                          f"{cutoff.isoformat()} remain, e.g. {old_leases[0]}"]
    return evidence, []


def verify_credential(
    client: hvac.Client,
    cred: Credential,
    *,
    address: str,
    spec: EnvironmentSpec,
    events: list[AuditEvent] | None,
    before: dict[str, Any] | None,
) -> Check:
    """Prove ``cred``'s rotation at its declared version; return (evidence, failures)."""
    failures: list[str] = []
    evidence: dict[str, Any] = {"kind": cred.kind, "version": cred.version}
    event = None
    if events is None:
        failures.append(f"{cred.id}: no audit log to search for the rotation request "
                        "(pass --audit-log)")
    else:
        event = rotation_evidence(events, cred.action_path, cred.version)
        if event is None:
            failures.append(f"{cred.id}: no audit event for the rotation write of version "
                            f"{cred.version} on {cred.action_path}")
        else:
            evidence["audit"] = {"request_id": event.request_id, "time": event.time,
                                 "path": event.path}
    seen = before or {}
    with vault_errors(address, f"verifying {cred.id}"):
        if cred.kind == "jwt-key":
            found, problems = _verify_jwt_key(client, cred, seen)
        elif cred.kind == "db-root":
            found, problems = _verify_root(client, cred, spec)
        elif cred.kind == "db-static-role":
            found, problems = _verify_static_role(client, cred, seen, event)
        else:
            found, problems = _verify_leases(client, cred, event)
    evidence.update(found)
    return evidence, failures + problems
