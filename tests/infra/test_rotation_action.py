"""Apply-time rotations under Pulumi mocks: an Endpoint per bumped credential, none at v1."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kernel import paths
from kernel.spec import EnvironmentSpec, parse_spec
from kernel.spec.credentials import credentials
from kernel.spec.loader import read_stack_file
from tests.conftest import CANARY_DB_PASSWORD, MockRun
from tests.infra.test_program import evaluate

ENDPOINT = "vault:generic/endpoint:Endpoint"
STATIC_ROLE = "vault:database/secretBackendStaticRole:SecretBackendStaticRole"
OIDC_ROLE = "vault:identity/oidcRole:OidcRole"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's wire marker for secret values


def data_json(endpoint: Any) -> str:
    """The Endpoint's dataJson (the SDK always marks it secret: the schema says sensitive)."""
    wrapped = endpoint.inputs["dataJson"]
    return str(wrapped["value"]) if isinstance(wrapped, dict) and SECRET_SIG in wrapped else (
        str(wrapped))


def local_data() -> dict[str, Any]:
    return copy.deepcopy(dict(read_stack_file(paths.stack_file("local"))["config"][
        paths.SPEC_CONFIG_KEY]))


def spec_of(data: dict[str, Any]) -> EnvironmentSpec:
    return parse_spec(data, source="Pulumi.local.yaml", stack="local")


def bumped(version: int) -> dict[str, Any]:
    """The local spec with every non-KV credential at ``version``."""
    data = local_data()
    data["jwt_issuer_keys"][0]["version"] = version
    data["database"]["connection"]["root_rotation"] = version
    data["database"]["static_roles"][0]["version"] = version
    for role in data["database"]["roles"]:
        role["lease_generation"] = version
    return data


def test_version_one_registers_no_rotation(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("local")
    evaluate(run, spec_of(local_data()))
    assert run.mocks.of_type(ENDPOINT) == {}, "creating a stack must rotate nothing"


def test_every_bumped_credential_is_one_endpoint_write_carrying_its_version(
    pulumi_mocks: Any,
) -> None:
    run: MockRun = pulumi_mocks("local")
    spec = spec_of(bumped(3))
    evaluate(run, spec)
    endpoints = {r.inputs["path"]: r for r in run.mocks.of_type(ENDPOINT).values()}
    expected = {c.action_path: c for c in credentials(spec) if c.kind != "kv"}
    assert set(endpoints) == set(expected)
    assert set(endpoints) == {
        "identity/oidc/key/tradepulse-adapters/rotate",
        "database/rotate-root/tradepulse-postgres",
        "database/rotate-role/execution-settlement",
        "sys/leases/revoke-prefix/database/creds/tradepulse-execution",
        "sys/leases/revoke-prefix/database/creds/tradepulse-ingestion",
        "sys/leases/revoke-prefix/database/creds/tradepulse-analytics",
    }
    for path, endpoint in endpoints.items():
        body = json.loads(data_json(endpoint))
        assert body["tradepulse_version"] == 3, path
        assert endpoint.inputs["disableRead"] is True, path
        assert endpoint.inputs["disableDelete"] is True, path
        assert CANARY_DB_PASSWORD not in data_json(endpoint)
        if path.startswith("sys/leases/revoke-prefix/"):
            assert body["sync"] is True, "the apply must wait until every lease is gone"


def test_rotate_root_waits_for_everything_else_on_the_connection(
    pulumi_mocks: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenBao fails requests that open a connection while rotate-root runs: it goes last."""
    from infra.components import database_engine

    after: dict[str, list[Any]] = {}
    real = database_engine.rotation_action

    def recording(credential: Any, opts: Any, **kwargs: Any) -> Any:
        action = real(credential, opts, **kwargs)
        after[credential.id] = list(opts.depends_on or [])
        return action

    monkeypatch.setattr(database_engine, "rotation_action", recording)
    run: MockRun = pulumi_mocks("local")
    spec = spec_of(bumped(2))
    evaluate(run, spec)
    assert spec.database is not None
    root = "database/config/tradepulse-postgres"
    engine_rotations = set(after) - {root}
    assert len(engine_rotations) == len(spec.database.roles) + len(spec.database.static_roles)
    endpoints = [r for r in after[root] if type(r).__name__ == "Endpoint"]
    assert len(endpoints) == len(engine_rotations), "rotate-root after every other rotation"
    kinds = {type(r).__name__ for r in after[root]}
    assert {"SecretBackendConnection", "SecretBackendRole", "SecretBackendStaticRole"} <= kinds
    for other in engine_rotations:
        assert all(type(r).__name__ != "Endpoint" for r in after[other]), (
            f"{other} must not wait for a rotation (only rotate-root waits)")


def test_only_the_bumped_credential_changes_its_endpoint(pulumi_mocks: Any) -> None:
    """Two programs that differ in one version differ in exactly one Endpoint input."""
    runs = []
    for static_version in (2, 3):
        data = bumped(2)
        data["database"]["static_roles"][0]["version"] = static_version
        run: MockRun = pulumi_mocks("local")
        evaluate(run, spec_of(data))
        runs.append({r.name: data_json(r) for r in run.mocks.of_type(ENDPOINT).values()})
    changed = {name for name in runs[0] if runs[0][name] != runs[1][name]}
    assert changed == {"rotate-db-static-role-database-static-roles-execution-settlement"}


def test_static_roles_and_issuer_roles_follow_the_spec(pulumi_mocks: Any) -> None:
    run: MockRun = pulumi_mocks("local")
    spec = spec_of(local_data())
    evaluate(run, spec)
    assert spec.database is not None
    role = spec.database.static_roles[0]
    got = run.mocks.of_type(STATIC_ROLE)[f"database-static-role-{role.name}"].inputs
    assert got["username"] == role.username == "tp_settlement"
    assert got["rotationPeriod"] == role.rotation_period_seconds
    assert got["rotationStatements"] == list(role.rotation_statements)
    assert got["dbName"] == spec.database.connection.name
    oidc_roles = run.mocks.of_type(OIDC_ROLE)
    assert {r.inputs["key"] for r in oidc_roles.values()} == {
        k.name for k in spec.jwt_issuer_keys}, "each key is published by a role signing with it"


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["database"]["static_roles"][0].update(consumers=["ingestion"]),
     "service 'ingestion' cannot read database/static-creds/execution-settlement"),
    (lambda d: d["database"]["static_roles"][0].update(paired_with=["nobody"]),
     "'nobody' is not another static role"),
    (lambda d: d["database"]["static_roles"][0].pop("rotation_period_seconds"),
     "database.static_roles[0]"),
    (lambda d: d["database"]["connection"].update(root_rotation=0),
     "database.connection.root_rotation"),
])
def test_bad_credential_declarations_name_the_key_path(mutate: Any, message: str) -> None:
    from kernel.spec import SpecError

    data = local_data()
    mutate(data)
    with pytest.raises(SpecError, match=None) as caught:
        spec_of(data)
    assert message in str(caught.value)
