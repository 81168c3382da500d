"""``make up`` of a stack file that was rotated before, on the new OpenBao it starts.

Every ``make up`` starts an empty server, but the stack file keeps its versions.
A secret declared at version 3 cannot be written with ``cas = 2`` where it does
not exist (check-and-set refuses, as it must: a newcomer who ran the README's
rotation, ``make down`` and ``make up`` got that error). The local environment's
``apply_to_new_server`` creates such secrets at version 1, writes the versions in
between as named placeholders and applies the stack file as declared; this runs
it on the real engine and reads the result back from OpenBao, not from Pulumi.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from rotation.stackedit import bump_version_text
from tests.e2e.conftest import local_spec, local_stack
from tools.localenv import HISTORY_PLACEHOLDER, REPO_ROOT, Workspace, apply_to_new_server

pytestmark = pytest.mark.e2e

SOURCE = "Pulumi.local.yaml"
SIGNING = "secret/services/execution/session-signing-key"  # generated
FEED = "secret/services/ingestion/market-data-feed"  # provided
HMAC = "secret/services/analytics/warehouse-hmac"  # left at version 1


def rotated_text() -> str:
    """The local stack file after two rotations of SIGNING and one of FEED."""
    text = (REPO_ROOT / SOURCE).read_text()
    for secret_id in (SIGNING, SIGNING, FEED):
        text = bump_version_text(text, secret_id, SOURCE)[0]
    return text


@pytest.fixture
def new_server(engine: str, tmp_path: Path,
               postgres: Any) -> Iterator[tuple[Workspace, Any, Any]]:
    """A workspace for the rotated stack file and an OpenBao that has never seen it."""
    with local_stack(tmp_path, postgres, spec_text=rotated_text()) as stack:
        yield stack


def history(client: hvac.Client, secret_id: str) -> list[dict[str, str]]:
    """Each version's data, version 1 first, as OpenBao holds it."""
    mount, path = secret_id.split("/", 1)
    meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    current = int(meta["data"]["current_version"])
    return [client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, version=version,
                raise_on_deleted_version=True)["data"]["data"]
            for version in range(1, current + 1)]


def test_a_rotated_stack_file_converges_on_a_new_server(
    new_server: tuple[Workspace, Any, Any], capfd: pytest.CaptureFixture[str],
) -> None:
    ws, server, edit = new_server
    client: hvac.Client = server.client()
    text = rotated_text()
    spec = local_spec(text)

    proc = apply_to_new_server(ws, spec, text, edit, client)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    signing, feed, hmac = (history(client, s) for s in (SIGNING, FEED, HMAC))
    assert [len(signing), len(feed), len(hmac)] == [3, 2, 1]
    placeholder = HISTORY_PLACEHOLDER.format(version=2)
    assert set(signing[1].values()) == {placeholder}  # version 2: the named placeholder
    # Versions 1 and 3 are generated values, and version 3 is the apply's new one.
    for data in (signing[0], signing[2]):
        assert data and placeholder not in data.values()
    assert signing[0] != signing[2]
    assert feed[0] == feed[1]  # a provided value is the config's at every version
    outputs = json.loads(ws.pulumi("stack", "output", "--json").stdout)
    assert outputs["static_secret_versions"][SIGNING] == 3
    assert outputs["static_secret_versions"][FEED] == 2
    assert ws.pulumi("preview", "--expect-no-changes", check=False).returncode == 0
    said = capfd.readouterr().err
    assert f"{SIGNING} is declared at version 3 and this OpenBao is new: versions 2..2 " \
           "hold placeholders; the apply writes version 3 with cas=2" in said
    assert f"{FEED} is declared at version 2" in said
    assert HMAC not in said
