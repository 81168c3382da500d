"""No secret value leaves the secret store: every command, as a real process, against canaries.

Canary values are planted everywhere a value lives: the KV v2 data of every
static secret, a provided secret's new value on stdin, a value in an
``--env-file``, the values ``kv-put`` reads from the environment, the database
root password configured in Vault, the Vault token, and the credentials
``secrets-issue-dynamic`` is issued. Then every command of ``python -m
rotation`` runs as a subprocess (``-v`` for debug logs), on a success and a
failure path, as text and with ``--json``. Afterwards each canary is searched
for in every run's stdout and stderr (logs, error messages and hints go
there), every file the runs left in the repository (records, the services
table) or beside it (evidence, output files), and every
git-tracked file (``git grep``). The one file allowed to hold the issued
credentials is the ``--output`` of ``secrets-issue-dynamic``.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.support import child_env, run_cli
from tests.rotation.commands.test_preflight_verify import apply_like_pulumi
from tests.rotation.dynamic_support import configure_database, lease_live

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"
HMAC = "secret/services/analytics/warehouse-hmac"
BROKER = "secret/services/execution/broker-api"
ROLE = "tradepulse-execution"
CANARY_VAULT = "CANARY-vault-data-5e0c1b"
CANARY_STDIN = "CANARY-stdin-value-8a27d4"
CANARY_ENVFILE = "CANARY-envfile-value-3f9e61"
CANARY_KVPUT = "CANARY-kvput-env-value-c4a0b2"
CANARY_EVIDENCE = "CANARY-evidence-file-77d3e0"
CANARY_ARGV = "CANARY-argv-value-1b6f5a"
CANARY_TRACKED = "CANARY-tracked-file-9c2e4d"


@dataclass
class Run:
    """One CLI run and what it must have done."""

    label: str
    args: list[str]
    expect: int
    stdin: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset it
    proc: subprocess.CompletedProcess[str] | None = None


@dataclass
class Harness:
    """Runs commands in phases (in parallel within a phase) and keeps every result."""

    repo: Path
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    def phase(self, *runs: Run) -> list[Run]:
        """Run ``runs`` concurrently (they touch nothing the others read) and check exit codes."""
        def go(run: Run) -> Run:
            env = {**self.env, **run.env}
            run.proc = run_cli(run.args, cwd=self.repo, stdin=run.stdin,
                               env={k: v for k, v in env.items() if v is not None})
            return run

        with ThreadPoolExecutor(max_workers=4) as pool:
            done = list(pool.map(go, runs))
        for run in done:
            assert run.proc is not None
            assert run.proc.returncode == run.expect, (
                f"{run.label}: exit {run.proc.returncode}, expected {run.expect}\n"
                f"{run.proc.stderr[-2000:]}")
            assert "Traceback" not in run.proc.stderr, f"{run.label}: traceback\n{run.proc.stderr}"
            if "--json" in run.args:
                json.loads(run.proc.stdout)  # only JSON on stdout, success or failure
            else:
                assert not run.proc.stdout.lstrip().startswith("{"), run.label
            if run.expect != 0:  # a failure always says so, and what to do
                said = "error:" in run.proc.stderr or "FAIL" in run.proc.stdout or (
                    "--json" in run.args and json.loads(run.proc.stdout).get("ok") is False)
                assert said, run.label
        self.runs.extend(done)
        return done


def both(label: str, args: list[str], expect: int, **kw: Any) -> list[Run]:
    """The run as text and with ``--json`` (given last: after the subcommand name)."""
    return [Run(f"{label} [text]", ["-v", *args], expect, **kw),
            Run(f"{label} [json]", ["-v", *args, "--json"], expect, **kw)]


def commit(root: Path, message: str) -> None:
    subprocess.run(["git", "-C", str(root), "commit", "-qam", message], check=True)


def test_no_command_leaks_a_canary(openbao: Any, postgres: Any, stack_repo: Path,
                                   tmp_path: Path) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=10, mount_point="secret")
    apply_like_pulumi(client, stack_repo, "local", value=CANARY_VAULT)
    configure_database(client, postgres, {ROLE: (300, 1800)})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env_file = tmp_path / "scripts.env"
    env_file.write_text(f"VAULT_TOKEN={openbao.root_token}\nUNUSED_SECRET={CANARY_ENVFILE}\n")
    bad_env_file = tmp_path / "bad.env"
    bad_env_file.write_text(f"VAULT_TOKEN={openbao.root_token}\n{CANARY_ENVFILE} oops\n")
    bad_evidence = tmp_path / "evidence.txt"
    bad_evidence.write_text(f"password: {CANARY_EVIDENCE}\n")
    env = child_env(VAULT_TOKEN=openbao.root_token, NEW_API_KEY=CANARY_KVPUT)
    h = Harness(stack_repo, env)
    repo = ["--repo", str(stack_repo)]
    stack = ["--stack", "local", *repo, "--address", openbao.address]
    audit = ["--audit-log", str(openbao.workdir / ".local" / "openbao" / "audit.log")]
    dyn = ["secrets-issue-dynamic", "--address", openbao.address, "--role", ROLE,
           "--token-env", "VAULT_TOKEN"]

    # A clone with a plaintext secret committed: the gate must fail without showing it.
    leaky = tmp_path / "leaky"
    subprocess.run(["git", "clone", "-q", str(stack_repo), str(leaky)], check=True)
    (leaky / "settings.ini").write_text(f'[db]\npassword = "{CANARY_TRACKED}"\n')
    subprocess.run(["git", "-C", str(leaky), "add", "settings.ini"], check=True)
    subprocess.run(["git", "-C", str(leaky), "-c", "user.name=T", "-c", "user.email=t@t",
                    "commit", "-qm", "leak"], check=True)

    # Phase 1: everything at v1 (in sync); read-only runs, failures, issue and kv-put.
    h.phase(
        *both("preflight ok", ["preflight", *stack, "--skip-lock-check", "--server-dir",
                               str(openbao.workdir)], 0),
        *both("preflight conflict", ["preflight", *stack, "--skip-lock-check",
                                     "--secret", SIGNING], 1),
        *both("verify ok", ["verify", *stack, *audit, "--secret", SIGNING], 0),
        *both("drift ok", ["drift", *stack], 0),
        *both("due ok", ["due", *stack, "--now", "2000-01-01"], 0),
        *both("due overdue", ["due", *stack, "--now", "2100-01-01"], 1),
        *both("plan bad base", ["plan", *repo, "--base", "no-such-rev"], 2),
        *both("gate ok", ["gate", *repo], 0),
        *both("gate plaintext", ["gate", "--repo", str(leaky)], 1),
        *both("record bad evidence", ["record", *stack, "--secret", SIGNING, "--evidence",
                                      str(bad_evidence)], 2),
        *both("bump provided, bare value for two keys",
              ["bump", "--stack", "local", BROKER, *repo, "--value-stdin"], 2,
              stdin=CANARY_STDIN),
        *both("bump provided, wrong keys",
              ["bump", "--stack", "local", BROKER, *repo, "--value-stdin"], 2,
              stdin=json.dumps({"API_KEY": CANARY_STDIN, "OTHER": CANARY_STDIN})),
        *both("bump generated given a value",
              ["bump", "--stack", "local", SIGNING, *repo, "--value-stdin"], 2,
              stdin=CANARY_STDIN),
        *both("kv-put value on the command line",
              ["kv-put", "--address", openbao.address, "--path", "teams/leak", *repo,
               "--set", f"API_KEY={CANARY_ARGV}"], 2),
        *both("kv-put broken JSON", ["kv-put", "--address", openbao.address, "--path",
                                     "teams/leak", *repo, "--stdin-json"], 2,
              stdin='{"API_KEY": "' + CANARY_STDIN),
        Run("kv-put ok [text]", ["-v", "kv-put", "--address", openbao.address, "--path",
                                 "teams/leak-text", *repo, "--set", "API_KEY=NEW_API_KEY"], 0),
        Run("kv-put ok [json]", ["-v", "kv-put", "--json", "--address", openbao.address,
                                 "--path", "teams/leak-json", *repo, "--stdin-json"], 0,
            stdin=json.dumps({"API_KEY": CANARY_STDIN})),
        *both("issue unknown role", [*dyn[:4], "nope", *dyn[5:], "--output",
                                     str(out_dir / "never.json")], 2),
        Run("issue ok [text]", ["-v", "--env-file", str(env_file), *dyn, "--output",
                                str(out_dir / "text" / "creds.json")], 0,
            env={"VAULT_TOKEN": None}),
        Run("issue ok [json]", ["-v", "--env-file", str(env_file), dyn[0], "--json", *dyn[1:],
                                "--output", str(out_dir / "json" / "creds.json")], 0,
            env={"VAULT_TOKEN": None}),
        *both("bad env file", ["--env-file", str(bad_env_file), *dyn, "--output",
                               str(out_dir / "never2.json")], 2),
        *both("revoke unknown lease", ["revoke", "--address", openbao.address, "--lease-id",
                                       f"database/creds/{ROLE}/nope"], 1),
    )
    creds = {fmt: json.loads((out_dir / fmt / "creds.json").read_text()) for fmt in ("text",
                                                                                     "json")}
    issued = [v for c in creds.values() for v in (c["username"], c["password"])]

    # Phase 2: bump two generated secrets (one reviewed diff each).
    h.phase(Run("bump ok [text]", ["-v", "bump", "--stack", "local", SIGNING, *repo,
                                   "--reason", "quarterly"], 0))
    h.phase(Run("bump ok [json]", ["-v", "bump", "--json", "--stack", "local", HMAC, *repo,
                                   "--allow-dirty"], 0))
    commit(stack_repo, "rotate")

    # Phase 3: bumped, not applied.
    h.phase(
        *both("plan ok", ["plan", *repo, "--base", "HEAD~1"], 0),
        *both("drift pending fails", ["drift", *stack, "--fail-on-pending"], 1),
        *both("verify not applied", ["verify", *stack, *audit], 1),
    )

    # Phase 4: applied like pulumi up; verify (evidence for the record), revoke the leases.
    for secret in (SIGNING, HMAC):
        apply_like_pulumi(client, stack_repo, "local", only=secret, value=CANARY_VAULT)
    verified = h.phase(
        *both("verify applied", ["verify", *stack, *audit], 0),
        Run("revoke ok [text]", ["-v", "revoke", "--address", openbao.address, "--lease-id",
                                 creds["text"]["lease_id"]], 0),
        Run("revoke ok [json]", ["-v", "revoke", "--json", "--address", openbao.address,
                                 "--lease-id", creds["json"]["lease_id"]], 0),
    )
    assert not lease_live(client, creds["text"]["lease_id"])
    evidence = tmp_path / "verify.json"
    evidence.write_text(next(r.proc.stdout for r in verified if r.label.endswith("[json]")
                             and r.proc is not None))

    # Phase 5: the records, with evidence and the dynamic output (credentials dropped).
    record = ["record", *stack, "--evidence", str(evidence), "--dynamic-output",
              str(out_dir / "text" / "creds.json"), "--pr", "#9"]
    h.phase(Run("record ok [text]", ["-v", *record, "--date", "2026-01-01"], 0))
    h.phase(Run("record ok [json]", ["-v", record[0], "--json", *record[1:],
                                     "--date", "2026-01-02"], 0))

    # The canaries, everywhere.
    canaries = {
        "vault data": CANARY_VAULT, "stdin value": CANARY_STDIN, "env file": CANARY_ENVFILE,
        "kv-put env": CANARY_KVPUT, "evidence file": CANARY_EVIDENCE, "argv": CANARY_ARGV,
        "tracked plaintext": CANARY_TRACKED, "vault token": openbao.root_token,
        "database root password": postgres.password,
        **{f"issued credential {i}": v for i, v in enumerate(issued)},
    }
    inputs = {env_file, bad_env_file, bad_evidence, out_dir / "text" / "creds.json",
              out_dir / "json" / "creds.json"}  # planted by the test, or the intended file
    artifacts: dict[str, str] = {}
    for run in h.runs:
        assert run.proc is not None
        artifacts[f"{run.label} stdout"] = run.proc.stdout
        artifacts[f"{run.label} stderr"] = run.proc.stderr
    for base in (stack_repo, tmp_path):
        for path in base.rglob("*"):
            if path.is_file() and ".git" not in path.parts and path not in inputs \
                    and leaky / "settings.ini" != path:
                artifacts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any("secret-rotations" in name for name in artifacts), "no record was written"
    checks = 0
    for what, canary in canaries.items():
        for name, text in artifacts.items():
            assert canary not in text, f"{what} leaked into {name}"
            checks += 1
        # -e: a generated password may begin with "-" and would be read as an option.
        grep = subprocess.run(["git", "-C", str(stack_repo), "grep", "-F", "-l", "-e", canary],
                              capture_output=True, text=True, check=False)
        assert grep.returncode == 1 and not grep.stdout, \
            f"{what} is in a tracked file (git grep exit {grep.returncode})"
        checks += 1
    # The intended file does hold its credentials (the check above is not vacuous).
    assert creds["text"]["password"] in (out_dir / "text" / "creds.json").read_text()
    assert len(h.runs) >= 44 and checks >= 44 * 2 * len(canaries)
    print(f"leak checks: {checks} ({len(canaries)} canaries x {len(artifacts)} artifacts "
          f"+ git grep), runs: {len(h.runs)}")

