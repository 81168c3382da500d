"""Usage errors show what was typed and what was meant, and point at the command's ``--help``.

The CLI runs in-process (``rotation.cli.main``); nothing here needs a server:
every case is refused by argument parsing (exit 2) before any file or Vault
is touched. A canary typed where a value could be shows that words which
could be secrets are never echoed.
"""

from __future__ import annotations

import json

import pytest

from rotation.cli import build_parser, main
from rotation.usage import known_options, positional_count, suggest

CANARY = "CANARY-usage-3f1d9b"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err
    return code, captured.out, captured.err


@pytest.mark.parametrize(("argv", "shown", "help_of"), [
    (["dirft", "--all"], ["unknown command 'dirft'", "did you mean 'drift'?"], ""),
    (["drift", "--stakc", "local"], ["unknown option --stakc", "did you mean --stack?"],
     " drift"),
    (["due", "--all", "--nwo", "2026-01-01"], ["--nwo", "did you mean --now?"], " due"),
    (["--jsn", "drift", "--all"], ["--jsn", "did you mean --json?"], " drift"),
    (["drift", "local"], ["unexpected argument(s) local", "did you mean --stack local?"],
     " drift"),
    (["secrets-issue-dynamic", "--role", "r", "--output", "o.json", "--replaced-lease",
      "expir"], ["'expir' is not one of revoke, expire", "did you mean 'expire'?"],
     " secrets-issue-dynamic"),
    (["verify", "--stack", "local", "--watch", "5x"], ["'5x'", "30s, 15m or 1h"], " verify"),
    (["drift", "--stack", "local", "--env-file", "x.env"],
     ["--env-file goes before the command: python -m rotation --env-file ... drift ..."], ""),
])
def test_usage_errors_show_the_typo_and_the_commands_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], shown: list[str], help_of: str,
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    for fragment in shown:
        assert fragment in err, err
    assert f"hint: see `python -m rotation{help_of} --help`" in err
    assert "Traceback" not in err
    code, out, _ = run(capsys, *argv, "--json")
    report = json.loads(out)
    assert code == 2 and report["exit_code"] == 2
    assert all(fragment in report["error"] for fragment in shown)


def test_words_that_could_be_values_are_counted_not_shown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A value pasted as an extra argument, and a mistyped --token-env carrying a token.
    code, _, err = run(capsys, "bump", "--stack", "prod", "secret/x", CANARY)
    assert code == 2 and "1 unexpected argument not shown" in err and "bump --help" in err
    code, _, err = run(capsys, "kv-put", "--path", "x", f"--tokenenv={CANARY}",
                       "--set", "A=B")
    assert code == 2 and "unknown option --tokenenv (did you mean --token-env?)" in err


def test_known_options_and_positionals_come_from_each_parsers_help() -> None:
    parser = build_parser()
    options = known_options(parser)
    assert options["--env-file"] is True and options["--json"] is False
    assert options["-v"] is False and options["--verbose"] is False
    assert positional_count(parser) == 1  # COMMAND
    assert suggest("preflite", ["preflight", "plan", "record"]) == "preflight"
    assert suggest("zzz", ["preflight", "plan"]) is None
