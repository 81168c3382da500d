"""``keep_previous`` through ``pulumi up --stack local`` on the real engine, until ``retire``.

The local stack (the credential-rotation e2e module's ``stack`` fixture: its
own workspace and OpenBao) declares the generated session-signing key
``keep_previous: true``; a bump writes version 2 with the new key and version
1's as ``SIGNING_KEY_PREVIOUS``, a second bump is refused, and ``retire``
writes version 3 with version 2's key only. Exactly one previous value is
kept at any time, and no value appears in any output.
"""

from __future__ import annotations

import json
from typing import Any

import hvac
import pytest

from tests.e2e.test_credential_rotations import rotation_cli, stack
from tests.e2e.test_rollback import changed_steps as changed
from tests.e2e.test_rollback import commit
from tests.e2e.test_rollback import data as read_data
from tools.localenv import Workspace

__all__ = ["stack"]  # the module-scoped fixture, reused (one workspace and OpenBao here)

pytestmark = pytest.mark.e2e

SIGNING = "secret/services/execution/session-signing-key"
PATH = "services/execution/session-signing-key"
KV_WRITE_URN_NAME = "secret-secret-services-execution-session-signing-key"


def data(client: hvac.Client, version: int | None = None) -> dict[str, str]:
    return read_data(client, version, PATH)


def test_keep_previous_keeps_exactly_one_previous_value_until_retire(
    stack: tuple[Workspace, Any]
) -> None:
    ws, server = stack
    client: hvac.Client = server.client()
    text = ws.stack_file.read_text()
    anchor = f"        path: {PATH}\n"
    ws.stack_file.write_text(text.replace(anchor, anchor + "        keep_previous: true\n", 1))
    commit(ws, "keep the previous signing key during a changeover")
    assert changed(ws) == {}  # declaring it writes nothing
    first = data(client, 1)

    bump = rotation_cli(ws, "bump", "--stack", "local", SIGNING)
    assert bump.returncode == 0, bump.stderr
    commit(ws, "rotate the signing key, keeping the old one")
    ws.pulumi("up", "--yes", "--skip-preview")
    second = data(client, 2)
    assert set(second) == {"SIGNING_KEY", "SIGNING_KEY_PREVIOUS"}
    assert second["SIGNING_KEY_PREVIOUS"] == first["SIGNING_KEY"] != second["SIGNING_KEY"]
    assert changed(ws) == {}
    audit_log = str(server.workdir / ".local" / "openbao" / "audit.log")
    verify = rotation_cli(ws, "verify", "--json", "--stack", "local", "--base", "HEAD~1",
                          "--audit-log", audit_log)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["previous_kept"] == {
        SIGNING: {"version": 2, "previous": 1, "kept": True}}
    for command in ("due", "drift"):  # both show the kept value and for how long
        shown = rotation_cli(ws, command, "--json", "--stack", "local")
        (row,) = [r for r in json.loads(shown.stdout)["secrets"] if r["id"] == SIGNING]
        assert row["previous_kept"]["version"] == 1, row
        assert row["previous_kept"]["keys"] == ["SIGNING_KEY_PREVIOUS"]
        assert row["previous_kept"]["for_seconds"] >= 0
        text = rotation_cli(ws, command, "--stack", "local").stdout
        assert "keeps v1 as <KEY>_PREVIOUS for" in text, text
    again = rotation_cli(ws, "bump", "--stack", "local", SIGNING)
    assert again.returncode == 2 and "retire" in again.stderr

    retire = rotation_cli(ws, "retire", "--stack", "local", SIGNING, "--reason", "verifiers moved")
    assert retire.returncode == 0, retire.stderr
    commit(ws, "retire the previous signing key")
    plan = rotation_cli(ws, "plan", "--base", "HEAD~1")
    assert "**retire: drops the previous value kept in version 2**" in plan.stdout, plan.stdout
    assert changed(ws) == {KV_WRITE_URN_NAME: "update"}  # the generated value keeps its state
    ws.pulumi("up", "--yes", "--skip-preview")
    third = data(client, 3)
    assert third == {"SIGNING_KEY": second["SIGNING_KEY"]}
    verify = rotation_cli(ws, "verify", "--json", "--stack", "local", "--base", "HEAD~1",
                          "--audit-log", audit_log)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["restored"][SIGNING]["data_matches"] is True

    # The next rotation keeps version 3's key as the one previous value, regenerating the new.
    assert rotation_cli(ws, "bump", "--stack", "local", SIGNING).returncode == 0
    commit(ws, "rotate again")
    ws.pulumi("up", "--yes", "--skip-preview")
    fourth = data(client, 4)
    assert fourth["SIGNING_KEY_PREVIOUS"] == third["SIGNING_KEY"] != fourth["SIGNING_KEY"]
    assert set(fourth) == {"SIGNING_KEY", "SIGNING_KEY_PREVIOUS"}
    outputs = [p.stdout + p.stderr for p in (bump, verify, again, retire, plan)]
    for value in (*first.values(), *second.values(), *fourth.values()):
        assert all(value not in out for out in outputs)
