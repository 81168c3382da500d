"""rotation.evidence: evidence files become checked identifiers, or are refused by field."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kernel import paths
from kernel.spec import load_stack_file
from rotation.errors import BadInput
from rotation.evidence import read_dynamic_output, read_evidence

SIGNING = "secret/services/execution/session-signing-key"
CANARY = secrets.token_urlsafe(30)
SPEC = load_stack_file(paths.stack_file("local"))
REQUEST = "6f1c2b7e-0a4d-4c1e-9b3a-2d5e8f7a9c01"

VERIFY: dict[str, Any] = {
    "ok": True, "stack": "local",
    "versions": [{"secret": SIGNING, "declared": 2, "live": 2,
                  "updated_time": "2026-11-27T10:00:00+00:00"}],
    "rotated": [SIGNING], "audit_log": "/var/log/audit.log",
    "audit_evidence": {SIGNING: {"request_id": REQUEST, "time": "2026-11-27T10:00:00.1Z",
                                 "operation": "create", "version": 2,
                                 "path": "secret/data/services/execution/session-signing-key",
                                 "error": None, "remote_address": "127.0.0.1"}},
    "leases": {"tradepulse-execution": 1}, "watch_failures": [], "failures": [],
}
PREFLIGHT: dict[str, Any] = {
    "ok": True, "stack": "local", "vault": {"address": "http://127.0.0.1:8200"},
    "secrets": [{"secret": SIGNING, "declared": 2, "live": 1, "state": "pending",
                 "rotated": True}],
    "audit_devices": [{"path": "file-local", "type": "file", "state": "logging",
                       "detail": "free text"}],
    "capabilities": {}, "lock": {"checked": False}, "warnings": ["x"], "failures": [],
}
DYNAMIC: dict[str, Any] = {
    "username": "v-user", "password": CANARY,
    "lease_id": "database/creds/tradepulse-execution/Ab12Cd34", "lease_duration": 300,
    "renewable": True, "role": "tradepulse-execution", "mount": "database",
    "issued_at": "2026-11-27T10:00:00Z", "expires_at": "2026-11-27T10:05:00Z",
}


def write(tmp_path: Path, data: dict[str, Any], name: str = "e.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_verify_output_becomes_identifiers(tmp_path: Path) -> None:
    ev = read_evidence(write(tmp_path, VERIFY), SPEC)
    assert ev.check == "verify" and ev.ok and ev.failures == 0
    assert ev.versions[0].secret == SIGNING and ev.versions[0].live == 2
    assert ev.audit_writes[0].request_id == REQUEST and ev.audit_writes[0].version == 2
    assert ev.leases == (("tradepulse-execution", 1),)


def test_preflight_output_becomes_identifiers(tmp_path: Path) -> None:
    ev = read_evidence(write(tmp_path, PREFLIGHT), SPEC)
    assert ev.check == "preflight" and ev.versions[0].state == "pending"
    assert ev.audit_devices == (("file-local", "logging"),)


def test_free_text_is_counted_never_kept(tmp_path: Path) -> None:
    data = copy.deepcopy(VERIFY)
    data["ok"] = False
    data["failures"] = [f"password: {CANARY}", CANARY]
    ev = read_evidence(write(tmp_path, data), SPEC)
    assert ev.failures == 2 and CANARY not in repr(ev)


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return change


AUDIT = ["audit_evidence", SIGNING]
REFUSED: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], None], str]] = [
    ("secret id", VERIFY, _set(["versions", 0, "secret"], CANARY), "versions[0].secret"),
    ("version as a string", VERIFY, _set(["versions", 0, "declared"], CANARY),
     "versions[0].declared"),
    ("version as a boolean", VERIFY, _set(["versions", 0, "live"], True), "versions[0].live"),
    ("request id", VERIFY, _set([*AUDIT, "request_id"], CANARY),
     f"audit_evidence[{SIGNING}].request_id"),
    ("audit time", VERIFY, _set([*AUDIT, "time"], CANARY), f"audit_evidence[{SIGNING}].time"),
    ("audit path", VERIFY, _set([*AUDIT, "path"], CANARY), f"audit_evidence[{SIGNING}].path"),
    ("audit operation", VERIFY, _set([*AUDIT, "operation"], CANARY),
     f"audit_evidence[{SIGNING}].operation"),
    ("audit key", VERIFY, lambda d: d["audit_evidence"].update({CANARY: {}}),
     "audit_evidence (a key)"),
    ("lease role", VERIFY, lambda d: d["leases"].update({CANARY: 1}), "leases (a key)"),
    ("ok", VERIFY, _set(["ok"], CANARY), "ok"),
    ("stack", VERIFY, _set(["stack"], CANARY), "stack"),
    ("failures not a list", VERIFY, _set(["failures"], CANARY), "failures"),
    ("state", PREFLIGHT, _set(["secrets", 0, "state"], CANARY), "secrets[0].state"),
    ("audit device", PREFLIGHT, _set(["audit_devices", 0, "path"], CANARY),
     "audit_devices[0].path"),
    ("audit device state", PREFLIGHT, _set(["audit_devices", 0, "state"], CANARY),
     "audit_devices[0].state"),
]


@pytest.mark.parametrize(("label", "base", "change", "field"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_a_field_that_is_not_an_identifier_refuses_the_file(
    label: str, base: dict[str, Any], change: Callable[[dict[str, Any]], None], field: str,
    tmp_path: Path,
) -> None:
    data = copy.deepcopy(base)
    change(data)
    path = write(tmp_path, data)
    with pytest.raises(BadInput) as caught:
        read_evidence(path, SPEC)
    assert str(caught.value).startswith(f"{path}: {field}: "), str(caught.value)
    assert CANARY not in str(caught.value) + str(caught.value.hint)


def test_ok_with_failures_is_a_contradiction(tmp_path: Path) -> None:
    data = {**VERIFY, "failures": [CANARY]}
    with pytest.raises(BadInput, match="ok: true contradicts its 1 failure") as caught:
        read_evidence(write(tmp_path, data), SPEC)
    assert CANARY not in str(caught.value)


def test_a_file_that_is_neither_check_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="neither a `verify --json` output"):
        read_evidence(write(tmp_path, {"ok": True, "stack": "local"}), SPEC)


def test_dynamic_output_keeps_lease_identifiers_only(tmp_path: Path) -> None:
    lease = read_dynamic_output(write(tmp_path, DYNAMIC), SPEC)
    assert lease.lease_id == DYNAMIC["lease_id"] and lease.lease_duration == 300
    assert CANARY not in repr(lease) and "v-user" not in repr(lease)


@pytest.mark.parametrize(("field", "value"), [
    ("lease_id", CANARY), ("lease_id", f"database/creds/tradepulse-execution/{CANARY}_x"),
    ("role", CANARY), ("mount", CANARY), ("lease_duration", CANARY), ("renewable", CANARY),
    ("issued_at", CANARY),
], ids=["lease_id", "lease_id-path", "role", "mount", "lease_duration", "renewable",
        "issued_at"])  # fixed: pytest-xdist's workers must collect the same test ids
def test_dynamic_output_with_a_bad_field_is_refused(field: str, value: str,
                                                    tmp_path: Path) -> None:
    path = write(tmp_path, {**DYNAMIC, field: value})
    with pytest.raises(BadInput) as caught:
        read_dynamic_output(path, SPEC)
    assert str(caught.value).startswith(f"{path}: {field}: ")
    assert CANARY not in str(caught.value)
