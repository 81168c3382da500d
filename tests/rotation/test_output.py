"""Output: ``--json`` indented at a terminal, compact elsewhere; URLs never carry credentials."""

from __future__ import annotations

import io
import json
import secrets
from typing import TextIO

import pytest

from rotation.output import Result, emit, emit_error, log, setup_logging


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


PAYLOAD = {"ok": True, "secrets": [{"id": "secret/a", "version": 2}], "when": object()}


def test_json_is_indented_at_a_terminal_and_compact_in_a_pipe() -> None:
    tty, pipe = Terminal(), io.StringIO()
    emit(Result(payload=PAYLOAD), as_json=True, stream=tty)
    emit(Result(payload=PAYLOAD), as_json=True, stream=pipe)
    assert tty.getvalue().startswith('{\n  "ok": true,')
    assert pipe.getvalue().count("\n") == 1 and pipe.getvalue().endswith("}\n")
    assert json.loads(tty.getvalue()) == json.loads(pipe.getvalue())
    assert list(json.loads(pipe.getvalue())) == ["ok", "secrets", "when"]  # sorted keys


CANARY = secrets.token_urlsafe(18)


def test_json_payloads_carry_urls_without_credentials() -> None:
    out = io.StringIO()
    payload = {"ok": False, "vault": {"address": f"http://ops:{CANARY}@h:8200"},
               "notes": [f"see https://h/x?token={CANARY}"], "plain": "https://h:8200"}
    emit(Result(payload=payload), as_json=True, stream=out)
    doc = json.loads(out.getvalue())
    assert CANARY not in out.getvalue()
    assert doc["vault"]["address"] == "http://h:8200" and doc["notes"] == ["see https://h/x?…"]
    assert doc["plain"] == "https://h:8200"


def test_errors_hints_and_logs_carry_urls_without_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit_error(f"cannot reach Vault at http://u:{CANARY}@h:1", f"try http://h:1?t={CANARY}",
               3, as_json=True)
    setup_logging(verbose=True)
    log.debug("connecting to %s", f"https://{CANARY}@h:8200")
    captured = capsys.readouterr()
    assert CANARY not in captured.out + captured.err
    assert json.loads(captured.out)["error"] == "cannot reach Vault at http://h:1"
    assert "connecting to https://h:8200" in captured.err


def test_text_output_carries_urls_without_credentials() -> None:
    tty = Terminal()

    def render(out: TextIO) -> None:
        assert out.isatty()  # tables still see the terminal
        out.write(f"lock held in s3://bucket/state?endpoint=x&key={CANARY}\n")

    emit(Result(payload={}, render_text=render), as_json=False, stream=tty)
    assert tty.getvalue() == "lock held in s3://bucket/state?…\n"
