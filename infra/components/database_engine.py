"""The database secrets engine: PostgreSQL connection and dynamic-credential roles."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_vault as vault

from infra.naming import resource_name
from infra.spec.model import DatabaseEngine as DatabaseEngineSpec


@dataclass(frozen=True)
class DatabaseSecrets:
    """Connection URL template and root credentials; always Pulumi secret outputs."""

    connection_url: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]


class DatabaseEngine(pulumi.ComponentResource):
    """Mounts the database engine, connects it to PostgreSQL and declares its roles."""

    roles: dict[str, vault.database.SecretBackendRole]

    def __init__(
        self,
        name: str,
        spec: DatabaseEngineSpec,
        secrets: DatabaseSecrets,
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
            allowed_roles=[role.name for role in spec.roles],
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
        self.role_names = pulumi.Output.all(*(r.name for r in self.roles.values()))
        self.register_outputs({"mount": self.mount.path, "roles": self.role_names})
