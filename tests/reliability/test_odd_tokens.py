"""Odd tokens: every command that sends a token refuses one it cannot send, with exit 2.

A token that is not printable ASCII without whitespace (a non-Latin-1
character, a non-ASCII Latin-1 one, CR/LF, a trailing newline, a tab, a
space, an escape character) is bad input: exit 2, a message saying what is
wrong with it, the token never shown, no traceback and, under ``--json``,
only JSON on stdout. The server is a real, reachable OpenBao: a command that
sent the token anyway would get a network error (exit 3), a 403 (exit 1) or
crash, never exit 2. Every command meets every odd token in-process (as text
and with ``--json``; the stack commands read ``VAULT_TOKEN_LOCAL``, the
others ``VAULT_TOKEN``), and each command once more as a real process.
"""

from __future__ import annotations

import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from tests.reliability.support import child_env, run_cli

pytestmark = pytest.mark.integration

SIGNING = "secret/services/execution/session-signing-key"
CANARY = secrets.token_hex(10)
ODD_TOKENS = {
    "non-Latin-1": f"hvs.{CANARY}\u2013x",       # an en dash pasted from a document
    "emoji": f"hvs.{CANARY}\U0001f511",
    "non-ASCII Latin-1": f"hvs.{CANARY}\u00e9",
    "CR/LF": f"hvs.{CANARY}\r\nX-Injected: 1",
    "trailing newline": f"hvs.{CANARY}\n",
    "tab": f"hvs.{CANARY}\tx",
    "space": f"Bearer hvs.{CANARY}",
    "escape": f"hvs.{CANARY}\x1b[0m",
}
SAYS = {"non-Latin-1": "non-ASCII", "emoji": "non-ASCII", "non-ASCII Latin-1": "non-ASCII",
        "CR/LF": "line break", "trailing newline": "line break", "tab": "whitespace",
        "space": "whitespace", "escape": "control character"}


def commands(address: str, repo: Path, out: Path) -> dict[str, list[str]]:
    """Every command that sends a token, with arguments that would otherwise succeed."""
    stack = ["--stack", "local", "--repo", str(repo), "--address", address]
    return {
        "preflight": ["preflight", *stack, "--skip-lock-check"],
        "verify": ["verify", *stack],
        "drift": ["drift", *stack],
        "due": ["due", *stack, "--now", "2000-01-01"],
        "record": ["record", *stack, "--secret", SIGNING, "--date", "2026-01-01"],
        "kv-put": ["kv-put", "--address", address, "--path", "teams/odd", "--set",
                   "K=HOME", "--repo", str(repo)],
        "secrets-issue-dynamic": ["secrets-issue-dynamic", "--address", address, "--role",
                                  "tradepulse-execution", "--output", str(out / "c.json")],
        "revoke": ["revoke", "--address", address, "--lease-id",
                   "database/creds/tradepulse-execution/x"],
    }


def _check(label: str, kind: str, *, as_json: bool, code: int, stdout: str,
           stderr: str) -> None:
    assert code == 2, f"{label}: exit {code}\n{stderr}"
    assert "Traceback" not in stderr, f"{label}\n{stderr}"
    assert CANARY not in stdout + stderr, f"{label}: the token was shown"
    assert SAYS[kind] in stderr and "the token is not shown" in stderr, f"{label}\n{stderr}"
    if as_json:
        doc = json.loads(stdout)
        assert doc["ok"] is False and doc["exit_code"] == 2, label
    else:
        assert stdout == "", label


def _variable(argv: list[str]) -> str:
    """The stack-specific variable where the command reads one, else VAULT_TOKEN."""
    return "VAULT_TOKEN_LOCAL" if "--stack" in argv else "VAULT_TOKEN"


def test_every_command_refuses_every_odd_token_with_exit_2(
    openbao: Any, stack_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In-process (an exception escaping main() fails the test): 8 commands x 8 tokens x 2."""
    out = tmp_path / "out"
    runs = 0
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    for name, argv in commands(openbao.address, stack_repo, out).items():
        for kind, token in ODD_TOKENS.items():
            for as_json in (False, True):
                with monkeypatch.context() as env:
                    env.delenv("VAULT_TOKEN", raising=False)
                    env.setenv(_variable(argv), token)
                    code = main(["-v", argv[0], *(["--json"] if as_json else []), *argv[1:]])
                captured = capsys.readouterr()
                _check(f"{name} {kind}", kind, as_json=as_json, code=code,
                       stdout=captured.out, stderr=captured.err)
                runs += 1
    assert not out.exists(), "a refused command wrote its output"
    assert runs == 8 * len(ODD_TOKENS) * 2
    print(f"odd-token runs in process: {runs}")


def test_as_real_processes_too(openbao: Any, stack_repo: Path, tmp_path: Path) -> None:
    """One process per command (the non-Latin-1 token that crashed four of them, --json)."""
    out = tmp_path / "out"
    runs = [(name, ["-v", argv[0], "--json", *argv[1:]],
             child_env(**{_variable(argv): ODD_TOKENS["non-Latin-1"]}))
            for name, argv in commands(openbao.address, stack_repo, out).items()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda r: (r[0], run_cli(r[1], cwd=stack_repo, env=r[2])), runs))
    for name, proc in done:
        _check(f"{name} (process)", "non-Latin-1", as_json=True, code=proc.returncode,
               stdout=proc.stdout, stderr=proc.stderr)
    assert not out.exists()
