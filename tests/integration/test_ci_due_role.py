"""The scheduled workflow's Vault role, ``ci-due-<stack>``, on a real OpenBao: what bump --due uses.

The JWT roles come from the staging stack file, created the way the JwtAuth
component declares them (the ``ci_login`` fixture of the CI-roles test), and
the policy is ``policies/acl/ci-due.hcl`` as written. A run of the
rotation-due workflow (branch main, deployment environment ``staging-due``)
logs in as ``ci-due-staging`` and runs ``bump --due`` with that token alone:
the stack file is edited, and the audit log shows that every request the token
made was a read of a declared secret's KV metadata, each allowed. The same
token is refused a KV data read, a KV write and a child token; other runs
cannot log in as the role. On the local stack, which declares a database
static role (real PostgreSQL), the token also reads the role's last rotation
and is refused its password and its rotation; a policy without that read
cannot run ``bump --due`` there, so the grant is needed, not guessed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from kernel import paths
from kernel.policy_files import read_policy
from kernel.spec import load_stack_file
from rotation.cli import main
from tests.integration.test_ci_jwt_roles import ci_login
from tests.integration.test_credential_rotations import configure_like_the_program
from tests.rotation.commands.test_bump import diff_lines
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi

__all__ = ["ci_login"]  # the fixture, reused: staging's JWT roles on the test's OpenBao

pytestmark = pytest.mark.integration

CANARY = "CANARY-ci-due-5e0c"
POLICY = "ci-due"
SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"
FEED = "secret/services/ingestion/market-data-feed"
STATIC = "database/static-roles/execution-settlement"
DUE_RUN = {"ref": "refs/heads/main", "environment": "staging-due"}


def audit_requests(server: Any, policy: str) -> list[tuple[str, str, str]]:
    """Return ``(operation, path, error)`` of every response to a token holding ``policy``.

    The openbao fixture's server logs to the local stack's file audit device
    (``.local/openbao/audit.log`` under its working directory).
    """
    log = server.workdir / ".local" / "openbao" / "audit.log"
    out = []
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "response" and policy in (
                (entry.get("auth") or {}).get("policies") or []):
            out.append((entry["request"]["operation"], entry["request"]["path"],
                        entry.get("error") or ""))
    return out


def bump_due(capsys: pytest.CaptureFixture[str], root: Path, stack: str,
             days: int) -> tuple[int, Any]:
    now = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code = main(["bump", "--json", "--due", "--stack", stack, "--now", now,
                 "--reason", "scheduled: past its rotation interval", "--repo", str(root)])
    out, err = capsys.readouterr()
    assert CANARY not in out + err
    return code, json.loads(out) if out else err


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except hvac.exceptions.Forbidden:
        return True
    return False


@pytest.fixture
def staging(openbao: Any, stack_repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """staging's secrets at their declared versions (values: the canary), ci-due loaded."""
    client: hvac.Client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=20, mount_point="secret")
    for secret in load_stack_file(paths.stack_file("staging", stack_repo)).static_secrets:
        assert secret.version is not None
        for cas in range(secret.version):
            client.secrets.kv.v2.create_or_update_secret(
                path=secret.path, secret={k: CANARY for k in secret.keys}, cas=cas,
                mount_point=secret.mount)
    client.sys.create_or_update_acl_policy(name=POLICY, policy=read_policy(POLICY))
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    return stack_repo


def test_a_due_run_logs_in_as_ci_due_and_bump_due_reads_only_metadata(
    openbao: Any, ci_login: Any, staging: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = ci_login("ci-due-staging", **DUE_RUN)
    assert token is not None
    monkeypatch.setenv("VAULT_TOKEN", token)
    # +91 days: the 30-day signing key is bumped; the 90-day provided ones need their owners.
    code, result = bump_due(capsys, staging, "staging", 91)
    assert code == 0, result
    assert [(r["id"], r["old_version"], r["new_version"]) for r in result["bumped"]] == [
        (SIGNING, 5, 6)]
    assert sorted(r["id"] for r in result["needs_owner"]) == [BROKER, FEED]
    assert len(diff_lines(staging)) == 2  # the one version line, nothing else

    spec = load_stack_file(paths.stack_file("staging", staging))
    expected = {("read", f"{s.mount}/metadata/{s.path}", "") for s in spec.static_secrets}
    login = ("update", "auth/jwt-ci/login", "")  # the login's own answer carries the policies
    assert set(audit_requests(openbao, POLICY)) == expected | {login}  # all of them, allowed

    due = openbao.client(token)
    path = SIGNING.removeprefix("secret/")
    assert refused(lambda: due.secrets.kv.v2.read_secret_version(
        path=path, mount_point="secret", raise_on_deleted_version=True))
    assert refused(lambda: due.secrets.kv.v2.create_or_update_secret(
        path=path, secret={"SIGNING_KEY": CANARY}, cas=5, mount_point="secret"))
    assert refused(lambda: due.secrets.kv.v2.update_metadata(
        path=path, max_versions=1, mount_point="secret"))
    assert refused(lambda: due.auth.token.create(policies=[POLICY]))
    assert openbao.client().secrets.kv.v2.read_secret_metadata(
        path=path, mount_point="secret")["data"]["current_version"] == 5  # nothing written


@pytest.mark.parametrize("claims", [
    {"ref": "refs/pull/42/merge", "environment": "staging-due"},  # a pull request's code
    {"ref": "refs/heads/feature", "environment": "staging-due"},  # another branch
    {"ref": "refs/heads/main", "environment": "staging"},  # the deploy job's environment
    {"ref": "refs/heads/main", "environment": "staging-preview"},
    {**DUE_RUN, "repository": "someone/fork"},
])
def test_only_a_due_run_on_main_logs_in_as_ci_due(ci_login: Any,
                                                  claims: dict[str, str]) -> None:
    assert ci_login("ci-due-staging", **claims) is None


def test_a_due_run_cannot_log_in_as_the_deploy_or_preview_role(ci_login: Any) -> None:
    assert ci_login("ci-rotate-staging", **DUE_RUN) is None
    assert ci_login("ci-preview-staging", **DUE_RUN) is None


def test_static_roles_need_exactly_the_static_role_read(
    openbao: Any, postgres: Any, stack_repo: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client: hvac.Client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=5, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local", value=CANARY)
    configure_like_the_program(client, load_stack_file(paths.stack_file("local", stack_repo)),
                               postgres)
    client.sys.create_or_update_acl_policy(name=POLICY, policy=read_policy(POLICY))
    # What a ci-due login is issued: the role's policies and the default policy.
    token = client.auth.token.create(policies=[POLICY], ttl="15m")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_ADDR", openbao.address)
    monkeypatch.setenv("VAULT_TOKEN", token)
    # +8 days: the static role (7-day period) is due; no KV secret is (30 days and more).
    code, result = bump_due(capsys, stack_repo, "local", 8)
    assert code == 0, result
    assert [(r["id"], r["kind"], r["old_version"], r["new_version"])
            for r in result["bumped"]] == [(STATIC, "db-static-role", 1, 2)]
    assert ("read", STATIC, "") in audit_requests(openbao, POLICY)
    assert {(op, error) for op, _, error in audit_requests(openbao, POLICY)} == {("read", "")}
    due = openbao.client(token)
    assert refused(lambda: due.read("database/static-creds/execution-settlement"))
    assert refused(lambda: due.write("database/rotate-role/execution-settlement"))

    # Without the static-role read the command cannot tell when the role rotated: exit 1.
    subprocess.run(["git", "-C", str(stack_repo), "checkout", "-q", "--", "."], check=True)
    narrower = read_policy(POLICY).split('path "database/static-roles/*"')[0]
    client.sys.create_or_update_acl_policy(name="ci-due-without-static-roles", policy=narrower)
    monkeypatch.setenv("VAULT_TOKEN", client.auth.token.create(
        policies=["ci-due-without-static-roles"], ttl="15m")["auth"]["client_token"])
    code, result = bump_due(capsys, stack_repo, "local", 8)
    assert code == 1
    assert result["error"].startswith(f"permission denied while reading {STATIC}")
    assert diff_lines(stack_repo) == []
