"""preflight after a killed ``pulumi up``: the stale lock and the pending operations it left.

The backend objects are the ones Pulumi's self-managed backend writes (a lock
``{"pid", "username", "hostname", "timestamp"}`` under ``.pulumi/locks/`` and
``checkpoint.latest.pending_operations`` in the stack's checkpoint), on a
file backend and on S3 (moto on loopback); the secrets live on a real
OpenBao. tests/e2e/test_apply_faults.py produces the same objects by killing
a real ``pulumi up``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from tests.rotation.commands.test_preflight_verify import SIGNING, apply_like_pulumi, commit_all

pytestmark = pytest.mark.integration

SECRET_URN = ("urn:pulumi:local::tradepulse-vault::tradepulse:vault:StaticSecrets$"
              "vault:kv/secretV2:SecretV2::secret-secret-services-execution-session-signing-key")
LOCK_KEY = ".pulumi/locks/organization/tradepulse-vault/local/5b0e9a7c.json"
CHECKPOINT_KEY = ".pulumi/stacks/tradepulse-vault/local.json"


def dead_pid() -> int:
    """A pid that was a process on this host a moment ago and is gone now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def killed_update_objects(pid: int, operation: str = "updating") -> dict[str, str]:
    lock = {"pid": pid, "username": "oncall", "hostname": socket.gethostname(),
            "timestamp": "2026-12-01T10:00:00Z"}
    checkpoint = {"version": 3, "checkpoint": {
        "stack": "organization/tradepulse-vault/local",
        "latest": {"manifest": {"time": "2026-12-01T10:00:00Z", "magic": "", "version": ""},
                   "resources": [],
                   "pending_operations": [{"resource": {"urn": SECRET_URN,
                                                        "type": "vault:kv/secretV2:SecretV2",
                                                        "custom": True},
                                           "type": operation}]}}}
    return {LOCK_KEY: json.dumps(lock), CHECKPOINT_KEY: json.dumps(checkpoint)}


@pytest.fixture
def rotated(openbao: Any, stack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The local stack applied at version 1, then the signing key bumped to 2 and committed."""
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=5, mount_point="secret")
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    apply_like_pulumi(client, stack_repo, "local")
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit_all(stack_repo, "rotate signing key")
    yield stack_repo


def preflight(capsys: pytest.CaptureFixture[str], repo: Path, address: str,
              backend: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["preflight", "--json", "--stack", "local", "--repo", str(repo), "--address",
                 address, "--backend", backend])
    return code, json.loads(capsys.readouterr().out)


def write_file_backend(root: Path, objects: dict[str, str]) -> str:
    for key, text in objects.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_text(text)
    return f"file://{root}"


@pytest.mark.parametrize("landed", [True, False], ids=["write-landed", "write-lost"])
def test_stale_lock_and_pending_write_say_exactly_what_to_run(
    openbao: Any, rotated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    landed: bool,
) -> None:
    if landed:  # the killed apply's write reached Vault: version 2 with cas=1
        apply_like_pulumi(openbao.client(), rotated, "local", only=SIGNING)
    backend = write_file_backend(tmp_path / "state", killed_update_objects(dead_pid()))
    code, out = preflight(capsys, rotated, openbao.address, backend)
    assert code == 1
    stale = [f for f in out["failures"] if "stale Pulumi lock" in f]
    assert stale and LOCK_KEY in stale[0] and "the update was killed" in stale[0]
    pending = [f for f in out["failures"] if "pending operation" in f]
    assert len(pending) == 1
    if landed:
        assert f"updating {SIGNING} (declared 2; its write landed: version 2 is live)" \
            in pending[0]
    else:
        assert f"updating {SIGNING} (declared 2; its write did not land: live version 1)" \
            in pending[0]
    assert [step.split("   #")[0] for step in out["next_steps"]] == [
        "pulumi cancel --stack local --yes",
        "python -m rotation adopt-pending --stack local",
        "pulumi up --stack local",
        "python -m rotation verify --stack local",
    ]
    holder = out["lock"]["holders"][0]
    assert holder["stale"] is True and holder["username"] == "oncall"
    assert out["lock"]["pending_operations"] == [
        {"urn": SECRET_URN, "type": "vault:kv/secretV2:SecretV2", "operation": "updating",
         "name": "secret-secret-services-execution-session-signing-key"}]
    # The killed apply's own write is not reported as someone else's.
    state = next(s for s in out["secrets"] if s["secret"] == SIGNING)
    assert state["state"] == "interrupted"
    assert not [f for f in out["failures"] if f.startswith(f"{SIGNING}: ")]


def test_a_live_lock_is_not_called_stale(openbao: Any, rotated: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    objects = killed_update_objects(dead_pid())
    del objects[CHECKPOINT_KEY]
    lock = json.loads(objects[LOCK_KEY])
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as alive:
        lock["pid"] = alive.pid
        objects[LOCK_KEY] = json.dumps(lock)
        backend = write_file_backend(tmp_path / "state", objects)
        code, out = preflight(capsys, rotated, openbao.address, backend)
        alive.kill()
    assert code == 1
    assert any("holds the lock on stack local" in f and "still running" in f
               for f in out["failures"]), out["failures"]
    assert out["next_steps"] == []  # nothing to clear: wait for it


@pytest.mark.parametrize("shape", ["cluster", "render-only"])
def test_pending_create_adds_clear_pending_creates_on_s3(
    openbao: Any, rotated: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, shape: str,
) -> None:
    import boto3
    import requests
    from moto.server import ThreadedMotoServer

    if shape == "render-only":  # the delivery objects go to files: refresh cannot read them
        stack_file = rotated / "Pulumi.local.yaml"
        text = stack_file.read_text()
        assert "        context: tradepulse-local\n" in text
        stack_file.write_text(text.replace("        context: tradepulse-local\n",
                                           "        render_dir: rendered\n"))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto keeps its backends per process: start from empty whatever ran before.
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=30).raise_for_status()
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_REGION": "eu-west-1"}.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="eu-west-1")
        s3.create_bucket(Bucket="tradepulse-pulumi-state",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        for key, text in killed_update_objects(dead_pid(), "creating").items():
            s3.put_object(Bucket="tradepulse-pulumi-state", Key=key, Body=text.encode())
        backend = (f"s3://tradepulse-pulumi-state?endpoint={host}:{port}&disableSSL=true"
                   "&s3ForcePathStyle=true&region=eu-west-1")
        code, out = preflight(capsys, rotated, openbao.address, backend)
    finally:
        server.stop()
    assert code == 1
    exclude = (" --exclude 'urn:pulumi:local::tradepulse-vault::**kubernetes:**'"
               if shape == "render-only" else "")
    assert out["next_steps"][1].startswith(
        f"pulumi refresh --stack local --yes --clear-pending-creates{exclude}   #")
    assert not any("adopt-pending" in step for step in out["next_steps"])
    assert any(f"creating {SIGNING}" in f for f in out["failures"])
