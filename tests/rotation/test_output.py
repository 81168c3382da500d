"""``--json`` output: indented at a terminal, compact elsewhere, the same data either way."""

from __future__ import annotations

import io
import json

from rotation.output import Result, emit


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
