"""The local stack's data against real servers: audit stanzas load, database SQL works.

These talk to a real OpenBao dev server and a real PostgreSQL through hvac;
the Pulumi engine is not involved (that is tests/e2e).
"""

from __future__ import annotations

from typing import Any

import pytest

from kernel import paths
from kernel.spec import load_stack_file

pytestmark = pytest.mark.integration


def test_openbao_starts_with_the_local_audit_devices(openbao: Any) -> None:
    spec = load_stack_file(paths.stack_file("local"))
    enabled = openbao.client().sys.list_enabled_audit_devices()["data"]
    assert {k.rstrip("/"): v["type"] for k, v in enabled.items()} == {
        d.path: d.type for d in spec.audit.devices}
    openbao.client().sys.read_health_status(method="GET")
    log = openbao.workdir / ".local" / "openbao" / "audit.log"
    assert log.exists() and log.stat().st_size > 0, "the audit device must be writing"


def test_openbao_refuses_api_audit_devices_by_default(openbao: Any) -> None:
    import hvac.exceptions

    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot enable audit device"):
        openbao.client().sys.enable_audit_device("file", path="api-made",
                                                 options={"file_path": "/dev/null"})


@pytest.mark.parametrize("role_index", [0, 1, 2])
def test_local_database_roles_issue_working_postgres_logins(
    openbao: Any, postgres: Any, role_index: int
) -> None:
    spec = load_stack_file(paths.stack_file("local"))
    assert spec.database is not None
    role = spec.database.roles[role_index]
    client = openbao.client()
    client.sys.enable_secrets_engine("database", path=spec.database.mount)
    client.secrets.database.configure(
        name=spec.database.connection.name,
        plugin_name="postgresql-database-plugin",
        connection_url=postgres.connection_url_template(),
        username=postgres.superuser,
        password=postgres.password,
        allowed_roles=[r.name for r in spec.database.roles],
        mount_point=spec.database.mount,
    )
    client.secrets.database.create_role(
        name=role.name, db_name=spec.database.connection.name,
        creation_statements=list(role.creation_statements),
        revocation_statements=list(role.revocation_statements),
        default_ttl=role.default_ttl_seconds, max_ttl=role.max_ttl_seconds,
        mount_point=spec.database.mount,
    )
    creds = client.secrets.database.generate_credentials(role.name,
                                                         mount_point=spec.database.mount)
    assert creds["lease_duration"] == role.default_ttl_seconds
    user, password = creds["data"]["username"], creds["data"]["password"]
    assert postgres.psql("select current_user", user=user, password=password) == user
    client.sys.revoke_lease(creds["lease_id"])
    assert postgres.psql(f"select count(*) from pg_roles where rolname = '{user}'") == "0"
