"""preflight and verify against a real OpenBao dev server, with CAS writes like the program.

Until a test runs the real engine (tests/e2e), the program's write is done
here with hvac exactly as pulumi-vault does it: version N with ``cas = N-1``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from kernel import paths
from kernel.spec import load_stack_file
from rotation.cli import main

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"
CANARY = "CANARY-live-value-0a9f77"


def apply_like_pulumi(client: hvac.Client, root: Path, stack: str, only: str | None = None,
                      value: str | None = None) -> None:
    """Write declared secrets at their version with cas = version - 1 (what the program does).

    Pulumi writes a secret when its *state* differs from the spec; here, with
    no state, ``only`` names the secret whose version changed, and otherwise a
    secret is written when the live version differs.
    """
    spec = load_stack_file(paths.stack_file(stack, root))
    for secret in spec.static_secrets:
        if only is not None and secret.id != only:
            continue
        live = client.secrets.kv.v2.read_secret_metadata(
            path=secret.path, mount_point=secret.mount,
        ) if _exists(client, secret.mount, secret.path) else None
        current = live["data"]["current_version"] if live else 0
        if only is None and current == secret.version:
            continue  # no diff, no write
        data = {k: value or secrets.token_urlsafe(12) for k in secret.keys}
        client.secrets.kv.v2.create_or_update_secret(
            path=secret.path, secret=data, cas=secret.cas, mount_point=secret.mount)


def _exists(client: hvac.Client, mount: str, path: str) -> bool:
    try:
        client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
    except hvac.exceptions.InvalidPath:
        return False
    return True


@pytest.fixture
def vault(openbao: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=5, mount_point="secret")
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    return openbao


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main([*argv[:1], "--json", *argv[1:]])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def common(vault: Any, root: Path) -> list[str]:
    return ["--stack", "local", "--repo", str(root), "--address", vault.address]


def audit_log(vault: Any) -> str:
    return str(vault.workdir / ".local" / "openbao" / "audit.log")


def commit_all(root: Path, message: str) -> None:
    subprocess.run(["git", "-C", str(root), "commit", "-qam", message], check=True)


def test_first_write_bump_apply_verify(vault: Any, stack_repo: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    args = common(vault, stack_repo)
    code, out, _ = cli(capsys, "preflight", *args, "--skip-lock-check")
    assert code == 0, out
    assert {s["state"] for s in out["secrets"]} == {"pending"}  # nothing exists yet: cas=0
    assert out["vault"]["sealed"] is False and out["vault"]["standby"] is False

    apply_like_pulumi(vault.client(), stack_repo, "local")
    code, out, _ = cli(capsys, "verify", *args, "--secret", SIGNING, "--audit-log",
                       audit_log(vault))
    assert code == 0, out
    assert out["audit_evidence"][SIGNING]["version"] == 1
    assert out["audit_evidence"][SIGNING]["request_id"]

    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit_all(stack_repo, "rotate signing key")
    capsys.readouterr()
    code, out, _ = cli(capsys, "preflight", *args, "--skip-lock-check")
    assert code == 0, out
    states = {s["secret"]: (s["state"], s["rotated"]) for s in out["secrets"]}
    assert states[SIGNING] == ("pending", True)
    code, out, _ = cli(capsys, "verify", *args, "--audit-log", audit_log(vault))
    assert code == 1
    assert f"{SIGNING}: live version 1, declared 2" in out["failures"]

    apply_like_pulumi(vault.client(), stack_repo, "local")
    code, out, _ = cli(capsys, "verify", *args, "--audit-log", audit_log(vault))
    assert code == 0, out
    assert out["rotated"] == [SIGNING]
    assert out["audit_evidence"][SIGNING]["version"] == 2


def test_out_of_band_write_fails_the_apply_and_preflight_catches_it_first(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = vault.client()
    args = common(vault, stack_repo)
    apply_like_pulumi(client, stack_repo, "local")
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit_all(stack_repo, "rotate")
    # Someone edits the secret by hand (the runbook's old way) before the apply.
    client.secrets.kv.v2.create_or_update_secret(
        path="services/execution/session-signing-key", secret={"SIGNING_KEY": CANARY}, cas=1,
        mount_point="secret")
    capsys.readouterr()
    code, out, err = cli(capsys, "preflight", *args, "--skip-lock-check")
    assert code == 1
    message = " ".join(out["failures"])
    assert f"{SIGNING}: already at version 2" in message
    assert "outside this repository" in message and "rebase the bump" in message
    assert CANARY not in json.dumps(out) + err

    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        apply_like_pulumi(client, stack_repo, "local", only=SIGNING)
    live = client.secrets.kv.v2.read_secret_version(
        path="services/execution/session-signing-key", mount_point="secret",
        raise_on_deleted_version=True)
    assert live["data"]["data"] == {"SIGNING_KEY": CANARY}, "the out-of-band value survives"
    assert live["data"]["metadata"]["version"] == 2


def test_preflight_checks_the_callers_capabilities(vault: Any, stack_repo: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = vault.client()
    for name in ("rotation-operator", "auditor"):
        client.sys.create_or_update_acl_policy(
            name=name, policy=(paths.POLICY_DIR / f"{name}.hcl").read_text())
    operator = client.auth.token.create(policies=["rotation-operator"], ttl="10m")
    auditor = client.auth.token.create(policies=["auditor"], ttl="10m")
    args = common(vault, stack_repo)
    monkeypatch.setenv("VAULT_TOKEN", operator["auth"]["client_token"])
    code, out, _ = cli(capsys, "preflight", *args, "--skip-lock-check")
    assert code == 0, out
    assert "create" in out["capabilities"]["secret/data/services/execution/broker-api"]
    monkeypatch.setenv("VAULT_TOKEN", auditor["auth"]["client_token"])
    code, out, _ = cli(capsys, "preflight", *args, "--skip-lock-check")
    assert code == 1
    assert any(f.startswith("token lacks 'create' on secret/data/services/") for f in
               out["failures"])


def test_preflight_fails_while_a_pulumi_update_holds_the_lock(
    vault: Any, stack_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = tmp_path / "state"
    lock_dir = backend / ".pulumi" / "locks" / "organization" / "tradepulse-vault" / "local"
    args = [*common(vault, stack_repo), "--backend", f"file://{backend}"]
    code, out, _ = cli(capsys, "preflight", *args)
    assert code == 0 and out["lock"] == {"checked": True, "backend": f"file://{backend}",
                                         "locks": [], "holders": [], "pending_operations": []}
    lock_dir.mkdir(parents=True)
    (lock_dir / "f1e2d3.json").write_text("{}")
    code, out, _ = cli(capsys, "preflight", *args)
    assert code == 1
    assert any("holds the lock on stack local" in f for f in out["failures"])


def test_preflight_without_a_backend_says_how(vault: Any, stack_repo: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    code = main(["preflight", *common(vault, stack_repo)])
    assert code == 2
    assert "pass --backend or set PULUMI_BACKEND_URL" in capsys.readouterr().err


def test_preflight_reports_a_sealed_vault_with_exit_3(vault: Any, stack_repo: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    vault.client().sys.seal()
    code = main(["preflight", *common(vault, stack_repo), "--skip-lock-check"])
    assert code == 3
    assert "sealed" in capsys.readouterr().err


def test_unreachable_vault_is_exit_3(stack_repo: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch,
                                     refused_url: Callable[[], str]) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    code = main(["verify", "--stack", "local", "--repo", str(stack_repo), "--address",
                 refused_url()])
    assert code == 3
    assert "cannot reach Vault" in capsys.readouterr().err


def test_verify_watch_catches_a_denied_request_on_a_rotated_path(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import threading
    import time

    client = vault.client()
    apply_like_pulumi(client, stack_repo, "local")
    client.sys.create_or_update_acl_policy(
        name="auditor", policy=(paths.POLICY_DIR / "auditor.hcl").read_text())
    auditor = client.auth.token.create(policies=["auditor"], ttl="10m")["auth"]["client_token"]

    def denied_read() -> None:
        time.sleep(1.0)
        with pytest.raises(hvac.exceptions.Forbidden):
            hvac.Client(url=vault.address, token=auditor).secrets.kv.v2.read_secret_version(
                path="services/execution/session-signing-key", mount_point="secret",
                raise_on_deleted_version=True)

    thread = threading.Thread(target=denied_read)
    thread.start()
    code, out, _ = cli(capsys, "verify", *common(vault, stack_repo), "--secret", SIGNING,
                       "--audit-log", audit_log(vault), "--watch", "3s")
    thread.join()
    assert code == 1
    assert out["watch_failures"][0]["path"] == "secret/data/services/execution/session-signing-key"
    assert "permission denied" in out["watch_failures"][0]["error"]


def test_verify_expects_leases(vault: Any, stack_repo: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    apply_like_pulumi(vault.client(), stack_repo, "local")
    code, out, _ = cli(capsys, "verify", *common(vault, stack_repo), "--expect-leases",
                       "tradepulse-execution")
    assert code == 1
    assert out["failures"] == [
        "no live leases under sys/leases/lookup/database/creds/tradepulse-execution"]
    code = main(["verify", *common(vault, stack_repo), "--expect-leases", "nope"])
    assert code == 2


def test_record_holds_identifiers_and_evidence_never_values(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client = vault.client()
    apply_like_pulumi(client, stack_repo, "local", value=CANARY)
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit_all(stack_repo, "rotate")
    capsys.readouterr()
    apply_like_pulumi(client, stack_repo, "local", only=SIGNING, value=CANARY)
    verify_out = tmp_path / "verify.json"
    code, out, _ = cli(capsys, "verify", *common(vault, stack_repo), "--audit-log",
                       audit_log(vault))
    assert code == 0
    verify_out.write_text(json.dumps(out))
    dynamic = tmp_path / "dynamic.json"
    dynamic.write_text(json.dumps({"username": "v-canary", "password": CANARY,
                                   "lease_id": "database/creds/tradepulse-execution/abc",
                                   "lease_duration": 300, "role": "tradepulse-execution",
                                   "mount": "database", "renewable": True}))
    code, out, err = cli(capsys, "record", *common(vault, stack_repo), "--operator", "Ada",
                         "--pr", "#42", "--evidence", str(verify_out), "--dynamic-output",
                         str(dynamic), "--date", "2026-11-27")
    assert code == 0, err
    record = (stack_repo / "reports/security/secret-rotations/2026-11-27.md").read_text()
    assert f"| `{SIGNING}` | 1 → 2 | 2 |" in record
    assert "- operator: Ada" in record and "- pull request: #42" in record
    assert "request `" in record and "database/creds/tradepulse-execution/abc" in record
    assert CANARY not in record and "v-canary" not in record
    services = (stack_repo / "docs/services.md").read_text()
    assert "| execution | local |" in services
    # Recording the same rotation again adds nothing (tests/rotation/commands/test_record.py).
    code, out, _ = cli(capsys, "record", *common(vault, stack_repo), "--secret", SIGNING,
                       "--date", "2026-11-27")
    assert code == 0 and out["entries"] == [] and out["already_recorded"]
    text = (stack_repo / "reports/security/secret-rotations/2026-11-27.md").read_text()
    assert text.count("rotation recorded") == 1
    assert CANARY not in text


def test_the_bump_reason_and_ticket_travel_into_the_record(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = vault.client()
    apply_like_pulumi(client, stack_repo, "local", value=CANARY)
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo), "--reason",
                 "suspected leak in build logs", "--ticket", "SEC-900"]) == 0
    commit_all(stack_repo, "rotate")
    capsys.readouterr()
    apply_like_pulumi(client, stack_repo, "local", only=SIGNING, value=CANARY)
    code, out, err = cli(capsys, "record", *common(vault, stack_repo), "--operator", "Ada",
                         "--date", "2026-11-28")
    assert code == 0, err
    [entry] = out["entries"]
    assert (entry["reason"], entry["ticket"]) == ("suspected leak in build logs", "SEC-900")
    record = (stack_repo / "reports/security/secret-rotations/2026-11-28.md").read_text()
    assert "| suspected leak in build logs ticket SEC-900 |" in record
    assert CANARY not in record


def test_preflight_reports_a_failing_audit_device(vault: Any, stack_repo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    args = [*common(vault, stack_repo), "--skip-lock-check", "--server-dir", str(vault.workdir)]
    code, out, _ = cli(capsys, "preflight", *args)
    assert code == 0, out
    assert out["audit_devices"] == [{
        "path": "file-local", "type": "file", "state": "logging",
        "detail": str(vault.workdir / ".local/openbao/audit.log")}]
    # The log file disappears under the server (a full disk, a rotated-away path): the
    # device no longer lands anything where the SIEM reads it.
    log = vault.workdir / ".local" / "openbao" / "audit.log"
    log.unlink()
    log.mkdir()
    code, out, _ = cli(capsys, "preflight", *args)
    assert code == 1
    assert any(f.startswith("audit device file-local is failing") and
               "Vault refuses requests once no audit device can log" in f
               for f in out["failures"])


def test_preflight_without_sudo_says_audit_devices_were_not_checked(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = vault.client()
    client.sys.create_or_update_acl_policy(
        name="rotation-operator", policy=(paths.POLICY_DIR / "rotation-operator.hcl").read_text())
    token = client.auth.token.create(policies=["rotation-operator"], ttl="10m")
    monkeypatch.setenv("VAULT_TOKEN", token["auth"]["client_token"])
    code, out, _ = cli(capsys, "preflight", *common(vault, stack_repo), "--skip-lock-check")
    assert code == 0
    assert out["audit_devices"] == []
    assert any("audit devices not checked" in w for w in out["warnings"])


def test_text_output_shows_each_check_once(vault: Any, stack_repo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    args = common(vault, stack_repo)
    assert main(["preflight", *args, "--skip-lock-check"]) == 0
    out = capsys.readouterr().out
    for secret in load_stack_file(stack_repo / "Pulumi.local.yaml").static_secrets:
        assert f"token capabilities on {secret.data_path}: root" in out
    apply_like_pulumi(vault.client(), stack_repo, "local")
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    capsys.readouterr()
    assert main(["verify", *args, "--secret", SIGNING, "--audit-log", audit_log(vault)]) == 1
    out = capsys.readouterr().out
    assert out.count(SIGNING) == out.count(f"FAIL {SIGNING}") == 2  # two checks, once each
    assert out.count(f"FAIL {SIGNING} live=1 declared=2") == 1
    assert f"FAIL {SIGNING}: no audit event for the write of version 2" in out


def test_verify_watch_shows_a_live_status_on_a_terminal_and_periodic_lines_off_one(
    vault: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from tests.rotation.terminal_support import run_on_terminal

    apply_like_pulumi(vault.client(), stack_repo, "local")
    argv = ["verify", *common(vault, stack_repo), "--secret", SIGNING, "--audit-log",
            audit_log(vault), "--watch", "3s"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "verify --watch local: 3s left; 4/4 versions as declared, audit evidence for 1/1 " \
           "rotated; 0 failed request(s) on 1 watched path(s)" in err
    assert "verify --watch local: done after 3s; 0 failed request(s)" in err

    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code, screen = run_on_terminal(argv, env=env, cwd=stack_repo, columns=200)
    assert code == 0, screen
    for left in ("3s left", "2s left", "1s left"):
        assert left in screen, screen
    assert "verify passed" in screen


@pytest.mark.parametrize("command", ["preflight", "verify", "record"])
@pytest.mark.parametrize(("flags", "says"), [
    (["--base", "no-such-revision"], "unknown git revision 'no-such-revision'"),
    (["--secret", "secret/services/nope"], "unknown secret(s) 'secret/services/nope'"),
])
def test_what_the_repository_says_wrong_is_said_before_vault_is_asked(
    command: str, flags: list[str], says: str, stack_repo: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Was: preflight and verify read Vault first, so an unreachable Vault (exit 3) hid the typo.
    closed = "http://127.0.0.1:9"  # nothing listens: asking Vault would be exit 3
    code = main([command, "--json", "--stack", "local", "--repo", str(stack_repo),
                 "--address", closed, *flags])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert says in json.loads(captured.out)["error"]
