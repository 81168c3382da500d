"""Audit fail-safe: prod and dr need two audit devices, and a dead audit device is reported.

Vault refuses every audited request once no audit device can log it, so a
single device is a single point of failure. The offline gate refuses a prod
or dr stack file that declares fewer than two devices (the ``stack-files``
check, like the CrossGuard rule ``prod-dr-two-audit-devices``). Against a real
OpenBao whose only device is a file device: when the audit file is replaced
by a directory and the server reopens its audit files (SIGHUP), every request
is refused; ``preflight`` then exits 3, says to look at the audit devices,
and changes nothing. (Its report of one failing device among working ones is
``tests/rotation/commands/test_preflight_verify.py``.)
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import hvac.exceptions
import pytest

from rotation.cli import main
from tests.reliability.support import State
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi
from tests.rotation.dynamic_support import wait_until

SECOND_DEVICE = """        - path: syslog-secondary
          type: syslog
          description: Second device so one failing device cannot block Vault
          options:
            facility: AUTH
            tag: vault-{stack}
"""


@pytest.mark.parametrize("stack", ["prod", "dr"])
def test_gate_refuses_prod_or_dr_with_one_audit_device(
    stack: str, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    device = SECOND_DEVICE.format(stack=stack)
    assert device in text
    path.write_text(text.replace(device, "", 1))
    subprocess.run(["git", "-C", str(stack_repo), "commit", "-qam", "one device"], check=True)
    code = main(["gate", "--json", "--repo", str(stack_repo)])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    checks = {c["name"]: c for c in report["checks"]}
    errors = [e for e in checks["stack-files"]["errors"] if "audit.devices" in e]
    assert errors == [
        f"Pulumi.{stack}.yaml: tradepulse-vault:spec.audit.devices: {stack} declares 1 audit "
        "device(s) (file-primary); it needs at least 2, because Vault refuses every request "
        "once no device can log: add a second device"]


def test_gate_accepts_one_audit_device_outside_prod_and_dr(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["gate", "--json", "--repo", str(stack_repo)])
    report = json.loads(capsys.readouterr().out)
    stack_files = next(c for c in report["checks"] if c["name"] == "stack-files")
    assert stack_files["ok"] is True, stack_files  # local declares one device: allowed
    assert "4 of 4 stack files validate" in stack_files["summary"]


@pytest.mark.integration
def test_preflight_when_the_only_audit_device_fails_is_exit_3(
    openbao: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=5, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local")
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    argv = ["preflight", "--json", "--stack", "local", "--repo", str(stack_repo), "--address",
            openbao.address, "--skip-lock-check", "--server-dir", str(openbao.workdir)]
    assert main(argv) == 0
    capsys.readouterr()
    before = State.take(stack_repo, client)

    log = openbao.workdir / ".local" / "openbao" / "audit.log"
    log.unlink()
    log.mkdir()  # the device can no longer open its file
    openbao.process.send_signal(signal.SIGHUP)  # the server reopens its audit files

    def refused() -> bool:
        try:
            client.auth.token.lookup_self()
        except hvac.exceptions.InternalServerError:
            return True
        return False

    wait_until(refused, 30, "OpenBao to refuse requests with no working audit device")
    code = main(argv)
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert out["ok"] is False and "internal error" in out["error"]
    assert "no audit device can log" in out["hint"]
    # Nothing changed: the repository, and (once the device works again) the live versions.
    log.rmdir()
    openbao.process.send_signal(signal.SIGHUP)
    wait_until(lambda: not refused(), 30, "OpenBao to serve again")
    assert before.diff(State.take(stack_repo, client)) == []
