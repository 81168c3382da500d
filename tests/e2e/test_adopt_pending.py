"""``adopt-pending`` with the real Pulumi CLI on a file backend and a real OpenBao.

The stack's checkpoint is the one a killed ``pulumi up`` of a rotation leaves
(tests/e2e/test_apply_faults.py makes it by killing a real apply): the signing
key's resource still at version 1's inputs, a pending ``updating`` operation
with version 2's. The state is put in place with ``pulumi stack import`` (which
encrypts its secrets); the pending operation is then added to the checkpoint,
since an import drops pending operations. ``dataJson`` is a plain property here
(writing Pulumi's secret marker would need its signature constants in the test);
the secret form is what tests/e2e/test_apply_faults.py's real state has. No
program runs:
``stack export`` and ``stack import`` are all the command uses. Each case checks
what Vault holds against the pending write: the killed apply's own write is
recorded, one that did not land is left for ``pulumi up``, another writer's is
refused with nothing changed. Values are canaries that must not be printed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from tests.rotation.commands.test_preflight_interrupted_apply import (
    LOCK_KEY,
    SECRET_URN,
    dead_pid,
    killed_update_objects,
    rotated,
)
from tests.rotation.commands.test_preflight_verify import SIGNING

pytestmark = pytest.mark.e2e
__all__ = ["rotated"]  # the fixture, imported for the tests below

PATH = "services/execution/session-signing-key"
STACK_URN = "urn:pulumi:local::tradepulse-vault::pulumi:pulumi:Stack::tradepulse-vault-local"
PROVIDER_URN = "urn:pulumi:local::tradepulse-vault::pulumi:providers:vault::default"
CANARY_OLD = "CANARY-adopt-old-6f1d"
CANARY_NEW = "CANARY-adopt-new-b27a"
CANARY_OTHER = "CANARY-adopt-other-94c0"
PASSPHRASE = "adopt-pending-e2e"


def kv_inputs(value: str, cas: int) -> dict[str, Any]:
    return {"mount": "secret", "name": PATH, "cas": cas, "options": {"cas": str(cas)},
            "dataJson": json.dumps({"SIGNING_KEY": value}, sort_keys=True),
            "deleteAllVersions": False, "disableRead": False}


def pulumi(repo: Path, backend: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{backend}",
           "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    proc = subprocess.run(["pulumi", *args, "--stack", "local", "--non-interactive"],
                          cwd=repo, input=stdin, capture_output=True, text=True, check=True,
                          env=env, timeout=120)
    return proc.stdout


def killed_stack(repo: Path, backend: Path) -> Path:
    """Create the stack and leave the checkpoint a killed apply of version 2 leaves."""
    subprocess.run(["pulumi", "stack", "init", "local", "--secrets-provider", "passphrase",
                    "--non-interactive"], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "PULUMI_BACKEND_URL": f"file://{backend}",
                        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}, timeout=120)
    checkpoint = backend / ".pulumi" / "stacks" / "tradepulse-vault" / "local.json"
    providers = json.loads(checkpoint.read_text())["checkpoint"]["latest"]["secrets_providers"]
    old = kv_inputs(CANARY_OLD, 0)
    version = "v3.274.1"
    deployment = {"version": 3, "deployment": {
        "manifest": {"time": "2026-12-01T10:00:00Z", "version": version,
                     "magic": hashlib.sha256(version.encode()).hexdigest()},
        "secrets_providers": providers,
        "resources": [
            {"urn": STACK_URN, "custom": False, "type": "pulumi:pulumi:Stack"},
            {"urn": PROVIDER_URN, "custom": True, "id": "provider-1",
             "type": "pulumi:providers:vault", "inputs": {}, "outputs": {}},
            {"urn": SECRET_URN, "custom": True, "id": f"secret/data/{PATH}",
             "type": "vault:kv/secretV2:SecretV2", "parent": STACK_URN,
             "provider": f"{PROVIDER_URN}::provider-1", "inputs": old,
             "outputs": {**old, "dataJson": json.dumps({"SIGNING_KEY": CANARY_OLD},
                                                       separators=(",", ":"))}},
        ]}}
    pulumi(repo, backend, "stack", "import", stdin=json.dumps(deployment))
    doc = json.loads(checkpoint.read_text())
    doc["checkpoint"]["latest"]["pending_operations"] = [
        {"resource": {"urn": SECRET_URN, "custom": True, "type": "vault:kv/secretV2:SecretV2",
                      "inputs": kv_inputs(CANARY_NEW, 1)}, "type": "updating"}]
    checkpoint.write_text(json.dumps(doc))
    return checkpoint


def exported(repo: Path, backend: Path) -> dict[str, Any]:
    """The stack's state with secrets shown (kept in memory by the test)."""
    deployment: dict[str, Any] = json.loads(
        pulumi(repo, backend, "stack", "export", "--show-secrets"))["deployment"]
    return deployment


def adopt_pending(capsys: pytest.CaptureFixture[str], repo: Path, backend: Path,
                  address: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["adopt-pending", "--stack", "local", "--repo", str(repo), "--address", address,
                 "--backend", f"file://{backend}"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for canary in (CANARY_OLD, CANARY_NEW, CANARY_OTHER):
        assert canary not in text
    return code, text


def write_version_2(client: Any, value: str) -> None:
    client.secrets.kv.v2.create_or_update_secret(path=PATH, secret={"SIGNING_KEY": value},
                                                 cas=1, mount_point="secret")


@pytest.fixture
def stack(engine: str, rotated: Path, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """The rotated repo, its file backend and the killed apply's checkpoint."""
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    backend = tmp_path / "state"
    backend.mkdir()
    return rotated, backend, killed_stack(rotated, backend)


def live_versions(client: Any) -> list[int]:
    meta = client.secrets.kv.v2.read_secret_metadata(path=PATH, mount_point="secret")
    return sorted(int(v) for v in meta["data"]["versions"])


def test_the_killed_applys_own_write_is_recorded_without_writing(
    openbao: Any, stack: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    repo, backend, _ = stack
    client = openbao.client()
    write_version_2(client, CANARY_NEW)  # the write landed before the kill
    code, text = adopt_pending(capsys, repo, backend, openbao.address)
    assert code == 0, text
    assert f"{SIGNING}: declared 2, live 2 - landed: recorded in the state" in text
    state = exported(repo, backend)
    assert not state.get("pending_operations")
    resource = next(r for r in state["resources"] if r["urn"] == SECRET_URN)
    assert resource["inputs"]["cas"] == 1 and resource["outputs"]["cas"] == 1
    assert resource["outputs"]["dataJson"] == f'{{"SIGNING_KEY":"{CANARY_NEW}"}}'  # normalised
    assert live_versions(client) == [1, 2]  # nothing written to Vault


def test_a_write_that_did_not_land_is_left_for_pulumi_up(
    openbao: Any, stack: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    repo, backend, _ = stack
    code, text = adopt_pending(capsys, repo, backend, openbao.address)
    assert code == 0, text
    assert f"{SIGNING}: declared 2, live 1 - not landed: pulumi up writes it" in text
    state = exported(repo, backend)
    assert not state.get("pending_operations")
    resource = next(r for r in state["resources"] if r["urn"] == SECRET_URN)
    assert resource["inputs"]["cas"] == 0  # the re-run writes version 2 with cas = 1
    assert live_versions(openbao.client()) == [1]


def test_another_writers_version_is_refused_and_nothing_changes(
    openbao: Any, stack: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    repo, backend, checkpoint = stack
    write_version_2(openbao.client(), CANARY_OTHER)
    before = checkpoint.read_text()
    code, text = adopt_pending(capsys, repo, backend, openbao.address)
    assert code == 1
    assert "holds other data than the killed apply was writing" in text
    assert checkpoint.read_text() == before


def test_a_locked_stack_is_refused_before_anything_is_read(
    openbao: Any, stack: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    repo, backend, checkpoint = stack
    lock = backend / LOCK_KEY
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(killed_update_objects(dead_pid())[LOCK_KEY])
    before = checkpoint.read_text()
    code, text = adopt_pending(capsys, repo, backend, openbao.address)
    assert code == 1
    assert "pulumi cancel --stack local --yes" in text
    assert checkpoint.read_text() == before


def test_nothing_pending_leaves_the_state_alone(
    openbao: Any, stack: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    repo, backend, checkpoint = stack
    doc = json.loads(checkpoint.read_text())
    doc["checkpoint"]["latest"]["pending_operations"] = []
    checkpoint.write_text(json.dumps(doc))
    before = checkpoint.read_text()
    code, text = adopt_pending(capsys, repo, backend, openbao.address)
    assert code == 0, text
    assert "0 pending operation(s) cleared" in text
    assert checkpoint.read_text() == before  # no import: not even rewritten
