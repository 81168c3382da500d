"""The database secrets engine: PostgreSQL connection, dynamic and static roles.

Three rotations live here, each a reviewed bump applied by
:func:`infra.components.rotation_action.rotation_action`:

* ``connection.root_rotation``: ``<mount>/rotate-root/<connection>``. The
  Pulumi config secret only *seeds* the root password. After a rotate-root
  only Vault knows it, and the connection keeps working on later applies
  because the provider sends the password only when the connection is created
  or the config secret itself changes (terraform-provider-vault does not resend
  an unchanged password, and Vault merges a connection update into the stored
  config). Setting a new config secret is therefore how an operator re-seeds
  (README: after a restore); the next ``root_rotation`` bump hides it again.
* ``static_roles[].version``: ``<mount>/rotate-role/<name>``.
* ``roles[].lease_generation``: ``sys/leases/revoke-prefix/<mount>/creds/<role>``
  (sync), after which every consumer must issue new credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_vault as vault

from infra.components.rotation_action import rotation_action
from kernel.naming import resource_name
from kernel.spec.credentials import (
    Credential,
    db_root_id,
    lease_generation_id,
    static_role_id,
)
from kernel.spec.model import DatabaseEngine as DatabaseEngineSpec


@dataclass(frozen=True)
class DatabaseSecrets:
    """Connection URL template and root credentials; always Pulumi secret outputs."""

    connection_url: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]


class DatabaseEngine(pulumi.ComponentResource):
    """Mounts the database engine, connects it to PostgreSQL and declares its roles."""

    roles: dict[str, vault.database.SecretBackendRole]
    static_roles: dict[str, vault.database.SecretBackendStaticRole]
    rotations: dict[str, vault.generic.Endpoint]

    def __init__(
        self,
        name: str,
        spec: DatabaseEngineSpec,
        secrets: DatabaseSecrets,
        rotations: Mapping[str, Credential] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tradepulse:vault:DatabaseEngine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        conn = spec.connection
        self.mount = vault.Mount(
            resource_name("database", spec.mount),
            path=spec.mount,
            type="database",
            description="Dynamic PostgreSQL credentials for TradePulse services",
            opts=child,
        )
        self.connection = vault.database.SecretBackendConnection(
            resource_name("database-connection", conn.name),
            backend=self.mount.path,
            name=conn.name,
            plugin_name="postgresql-database-plugin",
            allowed_roles=[role.name for role in spec.roles]
            + [role.name for role in spec.static_roles],
            verify_connection=conn.verify_connection,
            postgresql=vault.database.SecretBackendConnectionPostgresqlArgs(
                connection_url=pulumi.Output.secret(secrets.connection_url),
                username=pulumi.Output.secret(secrets.username),
                password=pulumi.Output.secret(secrets.password),
                max_open_connections=conn.max_open_connections,
            ),
            opts=child,
        )
        self.roles = {}
        for role in spec.roles:
            self.roles[role.name] = vault.database.SecretBackendRole(
                resource_name("database-role", role.name),
                backend=self.mount.path,
                name=role.name,
                db_name=self.connection.name,
                creation_statements=list(role.creation_statements),
                revocation_statements=list(role.revocation_statements),
                default_ttl=role.default_ttl_seconds,
                max_ttl=role.max_ttl_seconds,
                opts=child,
            )
        self.static_roles = {}
        for static in spec.static_roles:
            self.static_roles[static.name] = vault.database.SecretBackendStaticRole(
                resource_name("database-static-role", static.name),
                backend=self.mount.path,
                name=static.name,
                db_name=self.connection.name,
                username=static.username,
                rotation_period=static.rotation_period_seconds,
                rotation_schedule=static.rotation_schedule,
                rotation_window=static.rotation_window_seconds,
                rotation_statements=list(static.rotation_statements),
                opts=child,
            )
        wanted = rotations or {}
        # sync: the apply returns only once every lease of the role is revoked.
        actions: list[tuple[str, list[pulumi.Resource], dict[str, object] | None]] = [
            (static_role_id(spec.mount, n), [r], None) for n, r in self.static_roles.items()]
        actions += [(lease_generation_id(spec.mount, n), [r], {"sync": True})
                    for n, r in self.roles.items()]
        self.rotations = {}
        for credential_id, after, extra in actions:
            self._rotate(wanted.get(credential_id), credential_id, after, extra)
        # rotate-root last, after everything else this engine does on the connection: while
        # OpenBao rotates the root password, a request that opens a connection with the stored
        # one (a rotate-role, a lease revocation, a static role's first rotation) fails with
        # "password authentication failed" (README, "The root rotation goes last";
        # bench/rotate_root_race.py).
        root_id = db_root_id(spec.mount, conn.name)
        self._rotate(wanted.get(root_id), root_id,
                     [self.connection, *self.roles.values(), *self.static_roles.values(),
                      *self.rotations.values()], None)
        self.role_names = pulumi.Output.all(*(r.name for r in self.roles.values()))
        self.register_outputs({"mount": self.mount.path, "roles": self.role_names})

    def _rotate(self, credential: Credential | None, credential_id: str,
                after: list[pulumi.Resource], extra: dict[str, object] | None) -> None:
        """Register ``credential``'s rotation Endpoint (if bumped), applied after ``after``."""
        action = None if credential is None else rotation_action(
            credential, pulumi.ResourceOptions(parent=self, depends_on=after), extra=extra)
        if action is not None:
            self.rotations[credential_id] = action
