"""A rotation-only change applied with ``pulumi up --target`` on the real engine.

The local stack against a fresh OpenBao: a bump of a generated KV secret and
a JWT issuer key is applied with the URNs the plan lists and
``--target-dependents`` (:mod:`tools.targeted_apply`, what ``make up-apply``
and the deploy workflow run); Vault holds the new versions and a whole-stack
``pulumi preview --expect-no-changes`` is clean afterwards. A KV-only
rotation runs the rotation-only program (only the rotated secret registered,
no ``--target-dependents``): the other resources and the stack's outputs are
kept, and the whole-stack check is clean. When the record of
the last apply is behind the stack (a rotation the plan does not see), the
targeted apply is refused by that check and a whole-stack apply converges; a
change that is not a rotation is applied whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import hvac
import pytest

from kernel.spec.credentials import credentials
from kernel.targets import rotation_urns
from rotation.stackedit import bump_credential_text, bump_version_text
from tests.e2e.conftest import local_spec, local_stack
from tools import targeted_apply
from tools.localenv import REPO_ROOT, Workspace
from tools.localenv import sync_stack_file as sync

pytestmark = pytest.mark.e2e

SOURCE = "Pulumi.local.yaml"
HMAC = "secret/services/analytics/warehouse-hmac"
SIGNING = "secret/services/execution/session-signing-key"
JWT_KEY = "identity/oidc/key/tradepulse-adapters"


@pytest.fixture(scope="module")
def stack(engine: str, tmp_path_factory: pytest.TempPathFactory,
          postgres: Any) -> Iterator[tuple[Workspace, Any, Any]]:
    """The local stack applied whole once against a fresh OpenBao; yields (ws, server, edit)."""
    with local_stack(tmp_path_factory.mktemp("targeted-apply"), postgres) as (ws, server, edit):
        ws.pulumi("up", "--yes", "--skip-preview")
        yield ws, server, edit


def bump_kv(text: str, secret_id: str) -> str:
    return bump_version_text(text, secret_id, SOURCE)[0]


def bump_credential(text: str, credential_id: str) -> str:
    spec = local_spec(text)
    [cred] = [c for c in credentials(spec) if c.id == credential_id]
    return bump_credential_text(text, cred, SOURCE)[0]


def kv_version(client: hvac.Client, secret_id: str) -> int:
    mount, path = secret_id.split("/", 1)
    meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    return int(meta["data"]["current_version"])


def jwks(client: hvac.Client) -> set[str]:
    return {k["kid"] for k in client.adapter.get("/v1/identity/oidc/.well-known/keys")["keys"]}


def clean(ws: Workspace) -> bool:
    return ws.pulumi("preview", "--expect-no-changes", check=False).returncode == 0


def test_a_rotation_applies_only_its_resources_and_leaves_the_stack_clean(
    stack: tuple[Workspace, Any, Any],
) -> None:
    ws, server, edit = stack
    client: hvac.Client = server.client()
    old = (REPO_ROOT / SOURCE).read_text()
    new = bump_credential(bump_kv(old, HMAC), JWT_KEY)
    kids_before = jwks(client)
    sync(ws, new, edit)

    result = targeted_apply.apply(ws, "local", old, new, REPO_ROOT)

    assert result.ok and result.targeted, result.message + result.output[-3000:]
    spec = local_spec(new)
    assert set(result.targets) == {*rotation_urns(spec, "local", "kv", HMAC),
                                   *rotation_urns(spec, "local", "jwt-key", JWT_KEY)}
    assert len(result.targets) == 3  # RandomPassword, SecretV2, the key's rotate Endpoint
    assert kv_version(client, HMAC) == 2
    assert kv_version(client, SIGNING) == 1
    assert len(jwks(client) - kids_before) == 1
    assert "whole-stack preview --expect-no-changes clean" in result.message
    assert clean(ws), "a whole-stack preview after the targeted apply must find nothing"
    (Path(ws.root) / "applied.yaml").write_text(new)


def outputs(ws: Workspace) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(ws.pulumi("stack", "output", "--json").stdout))


def test_a_kv_rotation_registers_only_its_secret_and_keeps_everything_else(
    stack: tuple[Workspace, Any, Any],
) -> None:
    ws, server, edit = stack
    client: hvac.Client = server.client()
    applied = (Path(ws.root) / "applied.yaml").read_text()
    before = outputs(ws)
    resources = len(json.loads(ws.pulumi("stack", "export").stdout)["deployment"]["resources"])
    new = bump_kv(applied, SIGNING)
    sync(ws, new, edit)

    result = targeted_apply.apply(ws, "local", applied, new, REPO_ROOT)

    assert result.ok and result.targeted and result.rotation_only, \
        result.message + result.output[-3000:]
    assert set(result.targets) == set(rotation_urns(local_spec(new), "local", "kv", SIGNING))
    assert "rotation-only program" in result.message
    # What the program registered: the stack, its provider, the component and the secret's
    # two resources, of the stack's dozens.
    assert "rotation-only program: 1 of 4 static secret(s) registered" in result.output
    assert kv_version(client, SIGNING) == 2 and kv_version(client, HMAC) == 2
    after = outputs(ws)
    assert after["static_secret_versions"] == {**before["static_secret_versions"], SIGNING: 2}
    assert {k: v for k, v in after.items() if k != "static_secret_versions"} == \
        {k: v for k, v in before.items() if k != "static_secret_versions"}
    state = json.loads(ws.pulumi("stack", "export").stdout)["deployment"]["resources"]
    assert len(state) == resources, "the engine keeps every resource the program did not register"
    assert clean(ws)
    (Path(ws.root) / "applied.yaml").write_text(new)


def test_a_targeted_apply_that_misses_a_change_fails_its_check(
    stack: tuple[Workspace, Any, Any],
) -> None:
    ws, server, edit = stack
    client: hvac.Client = server.client()
    applied = (Path(ws.root) / "applied.yaml").read_text()
    # The stack moves two secrets on, but the record of the last apply already shows one
    # of them (say an apply that failed after recording): the plan sees only the other.
    unseen = bump_kv(applied, SIGNING)
    new = bump_kv(unseen, HMAC)
    sync(ws, new, edit)

    result = targeted_apply.apply(ws, "local", unseen, new, REPO_ROOT)

    assert result.targeted and result.rotation_only and not result.ok
    assert "left changes in the whole stack" in result.message
    assert kv_version(client, HMAC) == 3 and kv_version(client, SIGNING) == 2
    assert not clean(ws)
    whole = targeted_apply.apply(ws, "local", unseen, new, REPO_ROOT, whole_stack=True)
    assert whole.ok and not whole.targeted, whole.output[-3000:]
    assert kv_version(client, SIGNING) == 3
    assert clean(ws)
    (Path(ws.root) / "applied.yaml").write_text(new)


def test_a_change_that_is_not_a_rotation_is_applied_whole(
    stack: tuple[Workspace, Any, Any],
) -> None:
    ws, _, edit = stack
    applied = (Path(ws.root) / "applied.yaml").read_text()
    assert "max_open_connections: 2" in applied
    new = applied.replace("max_open_connections: 2", "max_open_connections: 3")
    sync(ws, new, edit)

    result = targeted_apply.apply(ws, "local", applied, new, REPO_ROOT)

    assert result.ok and not result.targeted
    assert "change(s) besides rotations" in result.message
    assert clean(ws)
