"""Values in the wrong place are never repeated back: leak checks for misplaced canaries.

``test_leaks`` plants canaries where values belong (KV data, tokens, stdin,
env files) and proves no command repeats them. This suite plants them where
an operator puts a value by mistake, and runs every command that can meet
it as a real process, as text and with ``--json`` (``-v`` for debug logs):

* a token pasted into the wrong line of ``Pulumi.local.yaml`` (a wrong-typed
  ``version``, an unknown key, a policy name) - every command that loads the
  spec: drift, due, preflight, verify, record, bump, kv-put, plan, gate;
* credentials inside an address: ``--address http://user:<canary>@host``,
  a token query string, ``VAULT_ADDR``, and the stack file's own
  ``vault.address`` - unreachable (exit 3) and reachable (exit 0);
* free text in the evidence files ``record`` reads (``versions[].secret``,
  ``failures[]``, audit errors) and in a ``secrets-issue-dynamic`` output.

Then every canary is searched for in every run's stdout and stderr and in
every file the runs left (records, the services table, outputs).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.support import child_env, run_cli
from tests.reliability.test_leaks import Harness, Run, both, commit
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"
KEY = "tradepulse-vault:spec"
# Token-shaped: what a pasted secret looks like (random, 40 characters).
CANARY_VERSION = secrets.token_urlsafe(30)
CANARY_KEY = secrets.token_urlsafe(30)
CANARY_POLICY = secrets.token_hex(16)
CANARY_USERINFO = secrets.token_urlsafe(30)
CANARY_QUERY = secrets.token_urlsafe(30)
CANARY_STACK_ADDRESS = secrets.token_urlsafe(30)
CANARY_EVIDENCE_ID = secrets.token_urlsafe(30)
CANARY_EVIDENCE_TEXT = secrets.token_urlsafe(30)
CANARY_DYNAMIC = secrets.token_urlsafe(30)


def clone(source: Path, target: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True)
    for key, value in (("user.name", "Test Operator"), ("user.email", "t@tradepulse.test")):
        subprocess.run(["git", "-C", str(target), "config", key, value], check=True)
    return target


def edit_spec(repo: Path, change: Any) -> None:
    path = repo / "Pulumi.local.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"][KEY])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    commit(repo, "misplaced value")


def spec_runs(label: str, repo: Path, address: str, out: Path, *, every: bool
              ) -> list[Run]:
    """Every command that loads the spec (``every``), or drift and the gate only."""
    r = ["--repo", str(repo)]
    stack = ["--stack", "local", *r, "--address", address]
    runs = [*both(f"{label}: drift", ["drift", *stack], 2),
            *both(f"{label}: gate", ["gate", *r], 1)]
    if every:
        runs += [
            *both(f"{label}: due", ["due", *stack], 2),
            *both(f"{label}: preflight", ["preflight", *stack, "--skip-lock-check"], 2),
            *both(f"{label}: verify", ["verify", *stack], 2),
            *both(f"{label}: record", ["record", *stack, "--secret", SIGNING], 2),
            *both(f"{label}: bump", ["bump", "--stack", "local", SIGNING, *r], 2),
            *both(f"{label}: kv-put", ["kv-put", "--address", address, "--path", "teams/x",
                                       "--set", "K=HOME", *r], 2),
            # (plan's text marks a failed stack with an emoji, not "FAIL": see extra_runs)
            Run(f"{label}: plan [json]", ["-v", "plan", "--json", *r, "--base", "HEAD~1"], 1),
        ]
    assert not out.exists()
    return runs


def address_runs(label: str, repo: Path, address: str, out: Path, expect: int) -> list[Run]:
    """Every command that talks to Vault, with ``address`` given as --address."""
    stack = ["--stack", "local", "--repo", str(repo), "--address", address]
    return [
        *both(f"{label}: drift", ["drift", *stack], expect),
        *both(f"{label}: due", ["due", *stack, "--now", "2000-01-01"], expect),
        *both(f"{label}: preflight", ["preflight", *stack, "--skip-lock-check"], expect),
        *both(f"{label}: verify", ["verify", *stack], expect),
        *both(f"{label}: kv-put", ["kv-put", "--address", address, "--path", f"teams/{expect}",
                                   "--set", "K=HOME", "--repo", str(repo)], expect),
        *both(f"{label}: issue", ["secrets-issue-dynamic", "--address", address, "--role",
                                  "tradepulse-execution", "--output",
                                  str(out / f"{expect}.json")], expect if expect else 2),
        *both(f"{label}: revoke", ["revoke", "--address", address, "--lease-id",
                                   "database/creds/tradepulse-execution/nope"],
              expect if expect else 1),
    ]


def test_misplaced_values_are_never_repeated(openbao: Any, stack_repo: Path, tmp_path: Path,
                                             refused_url: Callable[[], str]) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=10, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local")
    out = tmp_path / "out"
    closed = refused_url().removeprefix("http://")
    env = child_env(VAULT_TOKEN=openbao.root_token, TRADEPULSE_GATE_CACHE="off")
    h = Harness(stack_repo, env)

    # 1. A token pasted into the wrong line of the stack file: every spec-loading command.
    wrong_type = clone(stack_repo, tmp_path / "wrong-type")
    edit_spec(wrong_type, lambda s: s["static_secrets"][1].update(version=CANARY_VERSION))
    unknown_key = clone(stack_repo, tmp_path / "unknown-key")
    edit_spec(unknown_key, lambda s: s["limits"].update({CANARY_KEY: 1}))
    policy = clone(stack_repo, tmp_path / "policy")
    edit_spec(policy, lambda s: s["services"][0]["policies"].append(CANARY_POLICY))
    stack_address = clone(stack_repo, tmp_path / "stack-address")
    edit_spec(stack_address, lambda s: s["vault"].update(
        address=f"http://ops:{CANARY_STACK_ADDRESS}@{closed}"))
    h.phase(
        *spec_runs("wrong-typed version", wrong_type, openbao.address, out, every=True),
        *spec_runs("secret as a key", unknown_key, openbao.address, out, every=False),
        *spec_runs("secret as a policy name", policy, openbao.address, out, every=False),
        *both("stack address with credentials: drift",
              ["drift", "--stack", "local", "--repo", str(stack_address)], 3),
        *both("stack address with credentials: preflight",
              ["preflight", "--stack", "local", "--repo", str(stack_address),
               "--skip-lock-check"], 3),
    )

    plan_text = run_cli(["-v", "plan", "--repo", str(wrong_type), "--base", "HEAD~1"],
                        cwd=stack_repo, env=env)
    # The plan names the field and line (the canonical-version rule), never the value.
    assert plan_text.returncode == 1 and ".version: " in plan_text.stdout
    assert "(line " in plan_text.stdout
    extra_outputs = {"plan [text] stdout": plan_text.stdout, "plan [text] stderr":
                     plan_text.stderr}

    # 2. Credentials inside an address: unreachable, then reachable.
    reachable = openbao.address.replace("http://", f"http://ops:{CANARY_USERINFO}@")
    h.phase(
        *address_runs("userinfo, unreachable", stack_repo,
                      f"http://ops:{CANARY_USERINFO}@{closed}", out, 3),
        *address_runs("token query, unreachable", stack_repo,
                      f"http://{closed}/?token={CANARY_QUERY}", out, 3),
        *both("VAULT_ADDR with userinfo: kv-put",
              ["kv-put", "--path", "teams/y", "--set", "K=HOME", "--repo", str(stack_repo)], 3,
              env={"VAULT_ADDR": f"http://ops:{CANARY_USERINFO}@{closed}"}),
        *both("VAULT_ADDR with userinfo: revoke",
              ["revoke", "--lease-id", "database/creds/tradepulse-execution/nope"], 3,
              env={"VAULT_ADDR": f"http://ops:{CANARY_USERINFO}@{closed}"}),
    )
    h.phase(*address_runs("userinfo, reachable", stack_repo, reachable, out, 0))

    # 3. Evidence and dynamic-output files with free text and odd identifiers.
    assert subprocess.run(["git", "-C", str(stack_repo), "status", "--porcelain"],
                          capture_output=True, text=True, check=True).stdout == ""
    from rotation.cli import main  # bump in-process: the stack repo, one reviewed diff
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    commit(stack_repo, "rotate")
    apply_like_pulumi(client, stack_repo, "local", only=SIGNING)
    verified = h.phase(Run("verify for evidence", ["verify", "--json", "--stack", "local",
                                                   "--repo", str(stack_repo), "--address",
                                                   openbao.address, "--audit-log",
                                                   str(openbao.workdir / ".local" / "openbao"
                                                       / "audit.log")], 0))
    assert verified[0].proc is not None
    good = json.loads(verified[0].proc.stdout)
    evidence_dir = tmp_path / "evidence"
    evidence_dir.mkdir()
    bad_id = {**good, "versions": [{**good["versions"][0], "secret": CANARY_EVIDENCE_ID}]}
    free_text = {**good, "ok": False, "failures": [f"password: {CANARY_EVIDENCE_TEXT}"],
                 "warnings": [CANARY_EVIDENCE_TEXT], "audit_log": CANARY_EVIDENCE_TEXT}
    dynamic_bad = {"lease_id": f"database/creds/{CANARY_DYNAMIC}", "lease_duration": 300,
                   "renewable": True, "role": "tradepulse-execution", "mount": "database",
                   "password": CANARY_DYNAMIC}
    files = {}
    for name, doc in (("bad-id.json", bad_id), ("free-text.json", free_text),
                      ("dynamic-bad.json", dynamic_bad)):
        files[name] = evidence_dir / name
        files[name].write_text(json.dumps(doc))
    record = ["record", "--stack", "local", "--repo", str(stack_repo), "--address",
              openbao.address]
    h.phase(
        *both("record: secret id in evidence", [*record, "--evidence", str(files["bad-id.json"])],
              2),
        *both("record: lease id in dynamic output",
              [*record, "--dynamic-output", str(files["dynamic-bad.json"])], 2),
        *both("record: --pr holds a token", [*record, "--pr", CANARY_EVIDENCE_ID], 2),
    )
    h.phase(Run("record: free text in evidence", ["-v", *record, "--evidence",
                                                  str(files["free-text.json"])], 0))
    records = list((stack_repo / "reports" / "security" / "secret-rotations").glob("*.md"))
    assert len(records) == 1 and "verify FAILED (1 failure(s), not copied)" in \
        records[0].read_text()

    canaries = {
        "wrong-typed version": CANARY_VERSION, "secret as a key": CANARY_KEY,
        "secret as a policy name": CANARY_POLICY, "address userinfo": CANARY_USERINFO,
        "address query": CANARY_QUERY, "stack-file address": CANARY_STACK_ADDRESS,
        "evidence identifier": CANARY_EVIDENCE_ID, "evidence free text": CANARY_EVIDENCE_TEXT,
        "dynamic output": CANARY_DYNAMIC,
    }
    inputs = {*files.values(), *(repo / "Pulumi.local.yaml" for repo in (
        wrong_type, unknown_key, policy, stack_address))}  # where the canaries were planted
    artifacts: dict[str, str] = dict(extra_outputs)
    for run in h.runs:
        assert run.proc is not None
        artifacts[f"{run.label} stdout"] = run.proc.stdout
        artifacts[f"{run.label} stderr"] = run.proc.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file() and ".git" not in path.parts and path not in inputs:
            artifacts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    checks = 0
    for what, canary in canaries.items():
        for name, text in artifacts.items():
            assert canary not in text, f"{what} leaked into {name}"
            checks += 1
    # The positions were reached: the messages name the field and the address's host.
    said = "\n".join(artifacts.values())
    assert "static_secrets[1].version: a 40-character string is not of type 'integer'" in said
    assert "limits.<40-character key>: unknown key" in said
    assert f"cannot reach Vault at http://{closed}" in said
    assert "versions[0].secret: a 40-character string is not a static secret" in said
    assert len(h.runs) >= 80
    print(f"misplaced-value leak checks: {checks} ({len(canaries)} canaries x "
          f"{len(artifacts)} artifacts), runs: {len(h.runs)}")
