"""Every credential a stack rotates by a reviewed version bump, in one list.

KV v2 static secrets were the first class with a declared version; the
others are JWT issuer keys (identity OIDC keys), the database root
credential, database static roles and the dynamic leases of a database role.
Each has an integer in the stack spec, and raising it by exactly one is the
one reviewed change that rotates it. This module is the kernel's single
description of them: the Pulumi program takes the API path an apply writes
from here, and the rotation CLI (bump, plan, gate, preflight, verify, due)
takes kind, identifier, version and consumers from here, so the two cannot
disagree about what a bump does. No pulumi, no hvac: data only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kernel.naming import database_creds_path, static_creds_path
from kernel.spec.model import EnvironmentSpec

Kind = Literal["kv", "jwt-key", "db-root", "db-static-role", "db-lease-generation"]
KINDS: tuple[Kind, ...] = ("kv", "jwt-key", "db-root", "db-static-role", "db-lease-generation")
KeyPath = tuple[str | int, ...]

# Version 1 is the credential as first created (or seeded); the apply of
# version N > 1 performs the N-th rotation once.
FIRST_VERSION = 1


@dataclass(frozen=True)
class Credential:
    """One rotatable credential: where its version lives and what a bump makes the apply do."""

    kind: Kind
    id: str
    version: int
    field: str  # the spec key holding the version
    where: KeyPath  # key path (under the spec) of the mapping that holds ``field``
    action_path: str  # the API path the apply writes to when the version changes
    capabilities: tuple[str, ...]  # what the apply token needs on ``action_path``
    action: str  # what the apply does, in reviewer words
    consumers: tuple[str, ...]
    reload: str  # what consumers must do
    rotation_interval_seconds: int | None
    related: tuple[str, ...]  # credential ids that belong together (staggered by ``due``)


def jwt_key_id(name: str) -> str:
    """Return the identifier of a JWT issuer key: its Vault path ``identity/oidc/key/<name>``."""
    return f"identity/oidc/key/{name}"


def db_root_id(mount: str, connection: str) -> str:
    """Return the identifier of a database root credential: ``<mount>/config/<connection>``."""
    return f"{mount}/config/{connection}"


def static_role_id(mount: str, name: str) -> str:
    """Return the identifier of a database static role: ``<mount>/static-roles/<name>``."""
    return f"{mount}/static-roles/{name}"


def lease_generation_id(mount: str, role: str) -> str:
    """Return the identifier of a role's lease generation: ``<mount>/roles/<role>``."""
    return f"{mount}/roles/{role}"


def rotation_payload(version: int) -> dict[str, Any]:
    """Return the body every apply-time rotation request carries.

    The declared version travels in the request so the audit log records
    which rotation each request was (``verify`` finds it there); Vault
    ignores the unknown field.
    """
    return {"tradepulse_version": version}


def credentials(spec: EnvironmentSpec) -> tuple[Credential, ...]:
    """Return every rotatable credential of ``spec``: KV secrets first, then the others."""
    out: list[Credential] = []
    for i, secret in enumerate(spec.static_secrets):
        if secret.version is None:  # a mirror: its version follows prod
            continue
        out.append(Credential(
            kind="kv", id=secret.id, version=secret.version, field="version",
            where=("static_secrets", i), action_path=secret.data_path,
            capabilities=("update",),
            action=f"writes version {secret.version} of {secret.data_path} with "
                   f"cas={secret.cas}",
            consumers=secret.consumers, reload="re-read the secret; VSO restarts the workload",
            rotation_interval_seconds=secret.rotation_interval_seconds, related=()))
    for i, key in enumerate(spec.jwt_issuer_keys):
        out.append(Credential(
            kind="jwt-key", id=jwt_key_id(key.name), version=key.version, field="version",
            where=("jwt_issuer_keys", i), action_path=f"identity/oidc/key/{key.name}/rotate",
            capabilities=("update",),
            action=f"rotates signing key {key.name} now (identity/oidc/key/{key.name}/rotate); "
                   f"the previous public key stays in the JWKS for "
                   f"{key.verification_ttl_seconds} s",
            consumers=(), reload="none: verifiers refetch the JWKS",
            rotation_interval_seconds=key.rotation_period_seconds, related=()))
    database = spec.database
    if database is None:
        return tuple(out)
    mount, conn = database.mount, database.connection
    out.append(Credential(
        kind="db-root", id=db_root_id(mount, conn.name), version=conn.root_rotation,
        field="root_rotation", where=("database", "connection"),
        action_path=f"{mount}/rotate-root/{conn.name}", capabilities=("update",),
        action=f"rotates the root password Vault connects to {conn.name} with "
               f"({mount}/rotate-root/{conn.name}); afterwards only Vault knows it",
        consumers=(), reload="none: issued credentials are unaffected",
        rotation_interval_seconds=None, related=()))
    for i, role in enumerate(database.static_roles):
        out.append(Credential(
            kind="db-static-role", id=static_role_id(mount, role.name), version=role.version,
            field="version", where=("database", "static_roles", i),
            action_path=f"{mount}/rotate-role/{role.name}", capabilities=("update",),
            action=f"rotates the password of database user {role.username} now "
                   f"({mount}/rotate-role/{role.name}); the previous one stops working",
            consumers=role.consumers,
            reload=f"re-read {static_creds_path(mount, role.name)}; VSO restarts the workload",
            rotation_interval_seconds=role.rotation_period_seconds,
            related=tuple(static_role_id(mount, p) for p in role.paired_with)))
    for i, dyn in enumerate(database.roles):
        users = tuple(s.name for s in spec.services if dyn.name in s.database_roles)
        creds = database_creds_path(mount, dyn.name)
        out.append(Credential(
            kind="db-lease-generation", id=lease_generation_id(mount, dyn.name),
            version=dyn.lease_generation, field="lease_generation",
            where=("database", "roles", i),
            action_path=f"sys/leases/revoke-prefix/{creds}", capabilities=("update", "sudo"),
            action=f"revokes every lease issued under {creds} "
                   f"(sys/leases/revoke-prefix/{creds}, needs sudo); "
                   "consumers must issue new credentials",
            consumers=users, reload="issue new credentials; running managers do it themselves",
            rotation_interval_seconds=None, related=()))
    return tuple(out)


def credential(spec: EnvironmentSpec, credential_id: str) -> Credential | None:
    """Return the credential ``credential_id`` of ``spec``, or None."""
    return next((c for c in credentials(spec) if c.id == credential_id), None)


def raw_versions(spec_data: Mapping[str, Any]) -> dict[str, tuple[Kind, object]]:
    """Return ``{id: (kind, version)}`` for the non-KV credentials of a raw (unvalidated) spec.

    Used on the *old* side of a diff, which may not validate any more; absent
    version fields read as :data:`FIRST_VERSION`, as the loader reads them.
    """
    out: dict[str, tuple[Kind, object]] = {}
    keys = spec_data.get("jwt_issuer_keys")
    for key in keys if isinstance(keys, list) else []:
        if isinstance(key, dict):
            out[jwt_key_id(str(key.get("name")))] = ("jwt-key", key.get("version", FIRST_VERSION))
    database = spec_data.get("database")
    if not isinstance(database, dict):
        return out
    mount = str(database.get("mount"))
    conn = database.get("connection")
    if isinstance(conn, dict):
        out[db_root_id(mount, str(conn.get("name")))] = (
            "db-root", conn.get("root_rotation", FIRST_VERSION))
    for field, kind, make_id, version_key in (
        ("static_roles", "db-static-role", static_role_id, "version"),
        ("roles", "db-lease-generation", lease_generation_id, "lease_generation"),
    ):
        items = database.get(field)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict):
                out[make_id(mount, str(item.get("name")))] = (
                    kind, item.get(version_key, FIRST_VERSION))  # type: ignore[assignment]
    return out
