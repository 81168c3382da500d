"""Usage errors (rotation.cli, rotation.usage): what was typed is shown, unless it could be a
secret; then its shape, through kernel.redact.describe, or nothing."""

from __future__ import annotations

import json

import pytest

from rotation.cli import main
from tests.planted import word_initial_token

CANARY = word_initial_token(30)


@pytest.mark.parametrize(("argv", "says"), [
    (["dirft", "--all"], "'dirft'"),
    (["drift", "--stack", "local", "--stakc", "x"], "--stakc"),
    (["kv-put", "--path", "x", "--set", "K=HOME", "--retries", "many"],
     "--retries: invalid int value: 'many'"),
])
def test_typos_are_shown(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert says in capsys.readouterr().err


def test_a_value_is_described_by_its_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kv-put", "--path", "x", "--set", "K=HOME", "--retries", CANARY]) == 2
    err = capsys.readouterr().err
    assert "--retries: invalid int value: a 40-character string" in err and CANARY not in err


@pytest.mark.parametrize("argv", [
    [CANARY],
    ["drift", "--stack", "local", CANARY],
    ["drift", "--stack", "local", f"--{CANARY}"],
    ["kv-put", "--path", "x", "--set", "K=HOME", "--retries", CANARY],
    ["secrets-issue-dynamic", "--role", "r", "--output", "o.json", "--refresh-margin", CANARY],
    ["verify", "--stack", "local", "--watch", CANARY],
])
def test_a_secret_typed_as_an_argument_is_described_not_shown(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    for as_json in (False, True):
        code = main([*argv, *(["--json"] if as_json else [])])
        captured = capsys.readouterr()
        assert code == 2
        assert CANARY not in captured.out + captured.err
        assert "error: " in captured.err
        if as_json:
            assert json.loads(captured.out)["exit_code"] == 2
