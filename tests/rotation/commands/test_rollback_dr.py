"""A prod rollback of a ``mirror_to_dr`` secret, followed in dr, on a real OpenBao.

prod's ``restores: M`` is the mirror's too: dr's ``mirror_of: prod`` entry
takes its version from prod's file, and the dr apply writes prod's restored
data (prod's ``dr_mirror`` output; ``tests/infra/test_static_secrets.py``
proves that through Pulumi's mocks). Here the dr Vault holds the mirror's
history as the dr applies wrote it (each version prod's data at prod's
version), the dr apply is made as the program makes it (version N+1, ``cas =
N``, version M's data), and then ``plan`` shows dr's row as a rollback,
``verify --stack dr`` proves by digest that dr's new version holds the data
of dr's version M, and ``record --stack dr`` marks it. A dr copy that did not
follow (still the bad value) fails ``verify``, and ``record`` refuses it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hvac
import pytest

from kernel import paths
from kernel.spec import load_stack_file
from rotation.cli import main
from tests.rotation.commands.test_rollback import commit

pytestmark = pytest.mark.integration

CANARY = "CANARY-rollback-dr-41a7"
SIGNING = "secret/services/execution/session-signing-key"
PATH = "services/execution/session-signing-key"


def value(secret_id: str, key: str, version: int) -> str:
    return f"{CANARY}-{secret_id.rsplit('/', 1)[1]}-{key}-v{version}"


def data(client: hvac.Client, version: int) -> dict[str, str]:
    """Read a version's data (compared inside the test, never printed)."""
    answer = client.secrets.kv.v2.read_secret_version(
        path=PATH, mount_point="secret", version=version, raise_on_deleted_version=True)
    return dict(answer["data"]["data"])


@pytest.fixture
def dr(openbao: Any, stack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """dr's secrets at their versions (a mirror at prod's), then prod rolls the key back."""
    client: hvac.Client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=20, mount_point="secret")
    prod = load_stack_file(paths.stack_file("prod", stack_repo))
    for secret in load_stack_file(paths.stack_file("dr", stack_repo)).static_secrets:
        origin = prod.secret(secret.id) if secret.mirror_of else secret
        assert origin is not None and origin.version is not None
        for version in range(1, origin.version + 1):
            client.secrets.kv.v2.create_or_update_secret(
                path=secret.path, secret={k: value(secret.id, k, version) for k in secret.keys},
                cas=version - 1, mount_point=secret.mount)
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    # prod: 9 -> 10, restoring version 8 (version 9 broke the verifiers).
    assert main(["rollback", "--stack", "prod", SIGNING, "--to-version", "8", "--reason",
                 "v9 broke the verifiers", "--repo", str(stack_repo)]) == 0
    commit(stack_repo, "roll back the signing key to version 8")
    return stack_repo


def dr_apply(client: hvac.Client, written: dict[str, str]) -> None:
    """What ``pulumi up --stack dr`` writes from prod's dr_mirror output: v10, cas 9."""
    client.secrets.kv.v2.create_or_update_secret(path=PATH, secret=written, cas=9,
                                                 mount_point="secret")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert CANARY not in out + err
    return code, out, err


def test_dr_follows_a_prod_rollback_and_verify_and_record_prove_it(
    openbao: Any, dr: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "plan", "--json", "--base", "HEAD~1", "--repo", str(dr))
    assert code == 0, out
    rows = {r["stack"]: r for r in json.loads(out)["rotations"]}
    assert (rows["dr"]["follows"], rows["dr"]["restores"], rows["dr"]["old_version"],
            rows["dr"]["new_version"], rows["dr"]["cas"]) == ("prod", 8, 9, 10, 9)
    assert any("digest of version 8" in c for c in rows["dr"]["checks"])
    code, markdown, _ = run(capsys, "plan", "--base", "HEAD~1", "--repo", str(dr))
    assert (f"| dr | `{SIGNING}` (follows prod) **rollback: restores version 8** | 9 → 10 | 9 |"
            in markdown)

    client: hvac.Client = openbao.client()
    good, bad = data(client, 8), data(client, 9)
    assert good != bad
    dr_apply(client, good)
    audit_log = str(openbao.workdir / ".local" / "openbao" / "audit.log")
    code, out, _ = run(capsys, "verify", "--json", "--stack", "dr", "--base", "HEAD~1",
                       "--audit-log", audit_log, "--repo", str(dr))
    report = json.loads(out)
    assert code == 0, report
    assert report["restored"] == {SIGNING: {"version": 10, "restores": 8, "data_matches": True}}
    evidence = tmp_path / "verify.json"
    evidence.write_text(out)
    code, out, err = run(capsys, "record", "--stack", "dr", "--base", "HEAD~1", "--operator",
                         "Test Operator", "--date", "2026-12-01", "--evidence", str(evidence),
                         "--repo", str(dr))
    assert code == 0, out + err
    text = (dr / "reports/security/secret-rotations/2026-12-01.md").read_text()
    assert f"| `{SIGNING}` (rollback: data of v8, digest verified) | 9 → 10 | 10 |" in text
    assert f"rollback: `{SIGNING}` v10 data equals v8's" in text
    assert all(v not in text for v in (*good.values(), *bad.values()))


def test_a_dr_copy_that_did_not_follow_the_rollback_fails_verify_and_is_not_recorded(
    openbao: Any, dr: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    client: hvac.Client = openbao.client()
    dr_apply(client, data(client, 9))  # version 10 written, but with the bad value
    audit_log = str(openbao.workdir / ".local" / "openbao" / "audit.log")
    code, out, _ = run(capsys, "verify", "--json", "--stack", "dr", "--base", "HEAD~1",
                       "--audit-log", audit_log, "--repo", str(dr))
    report = json.loads(out)
    assert code == 1
    assert report["restored"][SIGNING]["data_matches"] is False
    assert (f"{SIGNING}: version 10: not true that its data equals version 8's (compared by "
            "digest)") in report["failures"]
    evidence = tmp_path / "verify.json"
    evidence.write_text(out)
    code, _, err = run(capsys, "record", "--stack", "dr", "--base", "HEAD~1", "--operator",
                       "Test Operator", "--date", "2026-12-01", "--evidence", str(evidence),
                       "--repo", str(dr))
    assert code == 1
    assert "rollback to v8: no verify evidence that its data equals that version's" in err
    assert not (dr / "reports/security/secret-rotations/2026-12-01.md").exists()


def test_preflight_in_dr_checks_the_mirror_can_be_proven_from_dr_history(
    openbao: Any, dr: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client: hvac.Client = openbao.client()
    argv = ("preflight", "--json", "--stack", "dr", "--base", "HEAD~1", "--skip-lock-check",
            "--server-dir", str(openbao.workdir), "--repo", str(dr))
    code, out, _ = run(capsys, *argv)
    report = json.loads(out)
    assert not [f for f in report["failures"] if SIGNING in f], report["failures"]
    client.secrets.kv.v2.destroy_secret_versions(path=PATH, versions=[8], mount_point="secret")
    code, out, _ = run(capsys, *argv)
    assert code == 1
    assert (f"{SIGNING}: version 8 is destroyed; its data cannot be restored"
            in json.loads(out)["failures"])
