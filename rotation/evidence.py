"""Evidence files for ``record``: re-derived into identifiers, never copied.

``record --evidence`` takes a saved ``preflight --json`` or ``verify --json``
output, and ``--dynamic-output`` a ``secrets-issue-dynamic`` output file.
Those are files an operator can edit, so nothing in them reaches the record
as text: each field ``record`` uses is validated into a structured
identifier of its own kind, and a field that is not one refuses the whole
file (exit 2, the file and field named, the value shown only by its shape):

* secret ids must be static secrets of the stack's spec;
* versions are integers (not booleans, not strings);
* request ids are UUIDs, times RFC 3339 timestamps, audit paths the
  secret's own data path;
* states, operations and check names come from fixed sets;
* lease ids are ``<mount>/creds/<role>/<id>`` of a database role the spec
  declares.

Free text (``failures[]``, ``warnings[]``, audit errors, hints) is never
read beyond its count. Fields ``record`` does not use are ignored, so newer
outputs with more fields still work.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel.naming import database_creds_path
from kernel.redact import describe
from kernel.spec import EnvironmentSpec
from rotation.errors import BadInput

# What an evidence file's entries say.
PREFLIGHT_STATES = frozenset({"in_sync", "pending", "drifted", "conflict", "missing"})
AUDIT_DEVICE_STATES = frozenset({"logging", "failing", "not-observable"})
WRITE_OPERATIONS = frozenset({"create", "update", "patch"})
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Vault/OpenBao lease ids end in a random alphanumeric id (older servers: a UUID).
_LEASE_SUFFIX = re.compile(rf"[A-Za-z0-9]{{1,64}}|{_UUID.pattern}")


@dataclass(frozen=True)
class VersionSeen:
    """One secret's versions as the check observed them."""

    secret: str
    declared: int
    live: int | None
    state: str | None = None


@dataclass(frozen=True)
class AuditWrite:
    """The audit-log entry of a rotation's write, as verify found it."""

    secret: str
    version: int
    request_id: str
    time: str


@dataclass(frozen=True)
class CredentialSeen:
    """A non-KV credential's rotation as verify saw it (Vault keeps no version of these)."""

    credential: str
    kind: str
    version: int
    request_id: str | None
    time: str | None


@dataclass(frozen=True)
class Evidence:
    """A validated preflight or verify output: identifiers only."""

    check: str
    ok: bool
    versions: tuple[VersionSeen, ...]
    audit_writes: tuple[AuditWrite, ...] = ()
    audit_devices: tuple[tuple[str, str], ...] = ()  # (path, state)
    leases: tuple[tuple[str, int], ...] = ()  # (role, live lease count)
    credentials: tuple[CredentialSeen, ...] = ()
    failures: int = 0
    # Rollbacks verify compared: (secret, version, restored version, data digests equal).
    restored: tuple[tuple[str, int, int, bool], ...] = ()


@dataclass(frozen=True)
class DynamicLease:
    """A validated secrets-issue-dynamic output: the lease's identifiers, no credentials."""

    lease_id: str
    role: str
    mount: str
    lease_duration: int
    renewable: bool
    issued_at: str | None
    expires_at: str | None


@dataclass
class _Reader:
    """Reads one file's fields; every refusal names the file and the field."""

    path: Path
    spec: EnvironmentSpec
    data: Mapping[str, Any] = field(default_factory=dict)

    def fail(self, where: str, value: object, what: str) -> BadInput:
        return BadInput(f"{self.path}: {where}: {describe(value)} is not {what}; nothing "
                        "was recorded",
                        hint="pass the file exactly as the command wrote it (record copies "
                             "no text from it, only identifiers it can check)")

    def get(self, container: Mapping[str, Any], key: str, where: str, *,
            required: bool = True) -> Any:
        if key not in container:
            if required:
                raise BadInput(f"{self.path}: {where}: required field is missing; nothing was "
                               "recorded")
            return None
        return container[key]

    def integer(self, value: object, where: str, *, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, value, "an integer")
        return value

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, value, "true or false")
        return value

    def secret_id(self, value: object, where: str) -> str:
        if not isinstance(value, str) or self.spec.secret(value) is None:
            raise self.fail(where, value, f"a static secret of stack {self.spec.environment}")
        return value

    def one_of(self, value: object, allowed: frozenset[str], where: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(where, value, f"one of {', '.join(sorted(allowed))}")
        return value

    def timestamp(self, value: object, where: str, *, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or len(value) > 40:
            raise self.fail(where, value, "an RFC 3339 timestamp")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(where, value, "an RFC 3339 timestamp") from None
        if parsed.tzinfo is None:
            raise self.fail(where, value, "an RFC 3339 timestamp with a time zone")
        return value

    def items(self, value: object, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, value, "a list")
        return value

    def mapping(self, value: object, where: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, value, "an object")
        return value


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a JSON object")
    return data


def _versions(r: _Reader, key: str, *, with_state: bool) -> tuple[VersionSeen, ...]:
    out = []
    for i, raw in enumerate(r.items(r.get(r.data, key, key), key)):
        where = f"{key}[{i}]"
        entry = r.mapping(raw, where)
        state = (r.one_of(r.get(entry, "state", f"{where}.state"), PREFLIGHT_STATES,
                          f"{where}.state") if with_state else None)
        out.append(VersionSeen(
            secret=r.secret_id(r.get(entry, "secret", f"{where}.secret"), f"{where}.secret"),
            declared=r.integer(r.get(entry, "declared", f"{where}.declared"),
                               f"{where}.declared") or 0,
            live=r.integer(r.get(entry, "live", f"{where}.live"), f"{where}.live",
                           optional=True),
            state=state))
    return tuple(out)


def _audit_writes(r: _Reader) -> tuple[AuditWrite, ...]:
    found = r.get(r.data, "audit_evidence", "audit_evidence", required=False) or {}
    out = []
    for secret_id, raw in sorted(r.mapping(found, "audit_evidence").items()):
        secret = r.spec.secret(r.secret_id(secret_id, "audit_evidence (a key)"))
        assert secret is not None
        where = f"audit_evidence[{secret_id}]"
        entry = r.mapping(raw, where)
        request_id = r.get(entry, "request_id", f"{where}.request_id")
        if not isinstance(request_id, str) or not _UUID.fullmatch(request_id):
            raise r.fail(f"{where}.request_id", request_id, "a Vault request id (a UUID)")
        audit_path = r.get(entry, "path", f"{where}.path")
        if audit_path != secret.data_path:
            raise r.fail(f"{where}.path", audit_path, f"the secret's data path "
                         f"{secret.data_path}")
        r.one_of(r.get(entry, "operation", f"{where}.operation"), WRITE_OPERATIONS,
                 f"{where}.operation")
        out.append(AuditWrite(
            secret=secret_id,
            version=r.integer(r.get(entry, "version", f"{where}.version"),
                              f"{where}.version") or 0,
            request_id=request_id,
            time=r.timestamp(r.get(entry, "time", f"{where}.time"), f"{where}.time") or ""))
    return tuple(out)


def _restored(r: _Reader) -> tuple[tuple[str, int, int, bool], ...]:
    found = r.mapping(r.get(r.data, "restored", "restored", required=False) or {}, "restored")
    out = []
    for secret_id, raw in sorted(found.items()):
        r.secret_id(secret_id, "restored (a key)")
        where = f"restored[{secret_id}]"
        entry = r.mapping(raw, where)
        out.append((secret_id,
                    r.integer(r.get(entry, "version", f"{where}.version"),
                              f"{where}.version") or 0,
                    r.integer(r.get(entry, "restores", f"{where}.restores"),
                              f"{where}.restores") or 0,
                    r.boolean(r.get(entry, "data_matches", f"{where}.data_matches"),
                              f"{where}.data_matches")))
    return tuple(out)


def _audit_devices(r: _Reader) -> tuple[tuple[str, str], ...]:
    declared = {d.path.rstrip("/") for d in r.spec.audit.devices}
    out = []
    devices = r.get(r.data, "audit_devices", "audit_devices", required=False) or []
    for i, raw in enumerate(r.items(devices, "audit_devices")):
        where = f"audit_devices[{i}]"
        entry = r.mapping(raw, where)
        path = r.get(entry, "path", f"{where}.path")
        if not isinstance(path, str) or path.rstrip("/") not in declared:
            raise r.fail(f"{where}.path", path, "an audit device the stack declares")
        out.append((path.rstrip("/"), r.one_of(r.get(entry, "state", f"{where}.state"),
                                               AUDIT_DEVICE_STATES, f"{where}.state")))
    return tuple(out)


def _leases(r: _Reader) -> tuple[tuple[str, int], ...]:
    roles = {x.name for x in r.spec.database.roles} if r.spec.database else set()
    found = r.mapping(r.get(r.data, "leases", "leases", required=False) or {}, "leases")
    out = []
    for role, count in sorted(found.items()):
        if role not in roles:
            raise r.fail("leases (a key)", role, "a database role the stack declares")
        out.append((role, r.integer(count, f"leases[{role}]") or 0))
    return tuple(out)


def _credentials(r: _Reader) -> tuple[CredentialSeen, ...]:
    from kernel.spec.credentials import credential

    found = r.mapping(r.get(r.data, "credentials", "credentials", required=False) or {},
                      "credentials")
    out = []
    for credential_id, raw in sorted(found.items()):
        declared = credential(r.spec, credential_id) if isinstance(credential_id, str) else None
        if declared is None or declared.kind == "kv":
            raise r.fail("credentials (a key)", credential_id,
                         "a JWT key, database root, static role or lease generation the "
                         "stack declares")
        where = f"credentials[{credential_id}]"
        entry = r.mapping(raw, where)
        kind = r.one_of(r.get(entry, "kind", f"{where}.kind"), frozenset({declared.kind}),
                        f"{where}.kind")
        version = r.integer(r.get(entry, "version", f"{where}.version"), f"{where}.version")
        audit = r.get(entry, "audit", f"{where}.audit", required=False)
        request_id = time = None
        if audit is not None:
            audit = r.mapping(audit, f"{where}.audit")
            request_id = r.get(audit, "request_id", f"{where}.audit.request_id")
            if not isinstance(request_id, str) or not _UUID.fullmatch(request_id):
                raise r.fail(f"{where}.audit.request_id", request_id,
                             "a Vault request id (a UUID)")
            time = r.timestamp(r.get(audit, "time", f"{where}.audit.time"),
                               f"{where}.audit.time")
        out.append(CredentialSeen(credential_id, kind, version or 0, request_id, time))
    return tuple(out)


def read_evidence(path: Path, spec: EnvironmentSpec) -> Evidence:
    """Validate a saved ``preflight --json`` / ``verify --json`` output into :class:`Evidence`."""
    r = _Reader(path, spec, _load_json(path))
    stack = r.get(r.data, "stack", "stack")
    if stack != spec.environment:
        raise r.fail("stack", stack, f"this record's stack {spec.environment}")
    ok = r.boolean(r.get(r.data, "ok", "ok"), "ok")
    failures = len(r.items(r.get(r.data, "failures", "failures", required=False) or [],
                           "failures"))
    if ok and failures:
        raise BadInput(f"{path}: ok: true contradicts its {failures} failure(s) (an edited "
                       "file?); nothing was recorded")
    if "versions" in r.data:
        return Evidence("verify", ok, _versions(r, "versions", with_state=False),
                        audit_writes=_audit_writes(r), leases=_leases(r),
                        credentials=_credentials(r), failures=failures,
                        restored=_restored(r))
    if "secrets" in r.data:
        return Evidence("preflight", ok, _versions(r, "secrets", with_state=True),
                        audit_devices=_audit_devices(r), failures=failures)
    raise BadInput(f"{path}: neither a `verify --json` output (versions) nor a "
                   "`preflight --json` output (secrets); nothing was recorded")


def read_dynamic_output(path: Path, spec: EnvironmentSpec) -> DynamicLease:
    """Validate a secrets-issue-dynamic output into the lease's identifiers."""
    r = _Reader(path, spec, _load_json(path))
    if spec.database is None:
        raise BadInput(f"{path}: stack {spec.environment} declares no database engine, so "
                       "it has no dynamic credentials to record")
    mount = r.get(r.data, "mount", "mount")
    if mount != spec.database.mount:
        raise r.fail("mount", mount, f"the stack's database mount {spec.database.mount}")
    role = r.one_of(r.get(r.data, "role", "role"),
                    frozenset(x.name for x in spec.database.roles), "role")
    lease_id = r.get(r.data, "lease_id", "lease_id")
    prefix = f"{database_creds_path(mount, role)}/"
    if not (isinstance(lease_id, str) and lease_id.startswith(prefix)
            and _LEASE_SUFFIX.fullmatch(lease_id[len(prefix):])):
        raise r.fail("lease_id", lease_id, f"a lease id {prefix}<id>")
    return DynamicLease(
        lease_id=lease_id, role=role, mount=mount,
        lease_duration=r.integer(r.get(r.data, "lease_duration", "lease_duration"),
                                 "lease_duration") or 0,
        renewable=r.boolean(r.get(r.data, "renewable", "renewable"), "renewable"),
        issued_at=r.timestamp(r.get(r.data, "issued_at", "issued_at", required=False),
                              "issued_at", optional=True),
        expires_at=r.timestamp(r.get(r.data, "expires_at", "expires_at", required=False),
                               "expires_at", optional=True))
