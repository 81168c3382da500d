"""Is a Pulumi update running on a stack, or did one die? Read the self-managed backend.

Self-managed backends (``file://``, ``s3://``) hold a lock object under
``.pulumi/locks/`` while an update runs: ``<org>/<project>/<stack>/<id>.json``
for project-scoped stacks (older layouts: ``<stack>/<id>.json``), holding the
``pid``, ``username``, ``hostname`` and ``timestamp`` of the process. A lock
whose process is gone (same host, pid not running) is *stale*: the update was
killed and nothing will ever release it.

A killed update also leaves ``pending_operations`` in the stack's checkpoint
(``.pulumi/stacks/<project>/<stack>.json``): resources it had started to
create, update or delete and never heard back about. :func:`pending_operations`
lists them (URN, type, operation) so preflight can compare them with what
Vault holds. The backend URL is ``--backend`` or ``$PULUMI_BACKEND_URL``.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kernel.redact import display_url
from rotation.errors import BadInput, CheckFailed

LOCK_PREFIX = ".pulumi/locks/"


@dataclass(frozen=True)
class LockStatus:
    """Lock objects found for a stack."""

    backend: str
    locks: tuple[str, ...]


@dataclass(frozen=True)
class LockHolder:
    """Who wrote a lock object, and whether that process is provably gone."""

    key: str
    pid: int | None
    username: str
    hostname: str
    timestamp: str
    stale: bool | None  # True: same host, process gone; None: cannot tell from here

    def describe(self) -> str:
        """``pid 123 of ops@host since <time>`` plus what is known of it."""
        who = f"pid {self.pid} of {self.username or '?'}@{self.hostname or '?'} since " \
              f"{self.timestamp or '?'}"
        if self.stale:
            return f"{who}: that process is gone (stale lock: the update was killed)"
        if self.stale is None:
            return f"{who}: on another host, cannot tell whether it still runs"
        return f"{who}: still running"


@dataclass(frozen=True)
class PendingOperation:
    """A resource a killed update started to change and never finished recording."""

    urn: str
    type: str  # resource type token, e.g. vault:kv/secretV2:SecretV2
    operation: str  # creating, updating, deleting, reading, importing

    @property
    def name(self) -> str:
        """The resource's name (the URN's last segment)."""
        return self.urn.rsplit("::", 1)[-1]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def lock_holder(key: str, text: str) -> LockHolder:
    """Parse one lock object; a lock written on this host by a dead pid is stale."""
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    pid = doc.get("pid") if isinstance(doc.get("pid"), int) else None
    host = str(doc.get("hostname") or "")
    stale: bool | None = None
    if pid is not None and host and host == socket.gethostname():
        stale = not _process_alive(pid)
    return LockHolder(key, pid, str(doc.get("username") or ""), host,
                      str(doc.get("timestamp") or ""), stale)


def _matches(key: str, project: str, stack: str) -> bool:
    rel = key[len(LOCK_PREFIX):] if key.startswith(LOCK_PREFIX) else key
    parts = rel.split("/")
    return (len(parts) >= 2 and parts[-2] == stack
            and (len(parts) == 2 or (len(parts) >= 3 and parts[-3] == project)))


def _s3(query: dict[str, list[str]]) -> Any:
    import boto3

    kwargs: dict[str, str] = {}
    if "endpoint" in query:
        scheme = "http" if query.get("disableSSL", ["false"])[0] == "true" else "https"
        kwargs["endpoint_url"] = f"{scheme}://{query['endpoint'][0]}"
    if "region" in query:
        kwargs["region_name"] = query["region"][0]
    return boto3.client("s3", **kwargs)


def read_object(backend: str, key: str) -> str | None:
    """Return the text of ``key`` in the backend (``None`` when it does not exist)."""
    parsed = urlparse(backend)
    if parsed.scheme == "file":
        path = Path(parsed.netloc + parsed.path).expanduser() / key
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckFailed(f"cannot read {path}: {exc.strerror}") from None
    if parsed.scheme == "s3":
        import botocore.exceptions

        try:
            body = _s3(parse_qs(parsed.query)).get_object(Bucket=parsed.netloc, Key=key)
            return str(body["Body"].read().decode("utf-8"))
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                return None
            raise CheckFailed(f"cannot read s3://{parsed.netloc}/{key}: "
                              f"{type(exc).__name__}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise CheckFailed(f"cannot read s3://{parsed.netloc}/{key}: "
                              f"{type(exc).__name__}") from None
    raise BadInput(f"backend {backend!r}: only file:// and s3:// backends keep readable locks")


def lock_holders(backend: str, status: LockStatus) -> list[LockHolder]:
    """Who holds each lock of ``status`` (a lock released meanwhile is left out)."""
    holders = []
    for key in status.locks:
        text = read_object(backend, key)
        if text is not None:
            holders.append(lock_holder(key, text))
    return holders


def pending_operations(backend: str, project: str, stack: str) -> list[PendingOperation]:
    """Return the ``pending_operations`` of the stack's checkpoint (empty: none, or no stack)."""
    text = None
    for key in (f".pulumi/stacks/{project}/{stack}.json", f".pulumi/stacks/{stack}.json"):
        text = read_object(backend, key)
        if text is not None:
            break
    if text is None:
        return []
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        raise CheckFailed(f"the checkpoint of stack {stack} in {backend} is not JSON") from None
    latest = ((doc.get("checkpoint") or {}).get("latest") or {}) if isinstance(doc, dict) else {}
    out = []
    for entry in latest.get("pending_operations") or []:
        resource = entry.get("resource") or {}
        out.append(PendingOperation(str(resource.get("urn", "")), str(resource.get("type", "")),
                                    str(entry.get("type", ""))))
    return out


def stack_locks(backend: str, project: str, stack: str) -> LockStatus:
    """Return the lock objects of ``project/stack`` in ``backend`` (file:// or s3://)."""
    parsed = urlparse(backend)
    if parsed.scheme == "file":
        base = Path(parsed.netloc + parsed.path).expanduser()
        locks_dir = base / LOCK_PREFIX
        found = sorted(str(p.relative_to(base)) for p in locks_dir.rglob("*.json")
                       if _matches(str(p.relative_to(base)), project, stack)) \
            if locks_dir.is_dir() else []
        return LockStatus(backend, tuple(found))
    if parsed.scheme == "s3":
        return LockStatus(backend, tuple(_s3_locks(parsed.netloc, parse_qs(parsed.query),
                                                   project, stack)))
    raise BadInput(f"backend {display_url(backend)}: only file:// and s3:// backends keep "
                   "readable locks")


def _s3_locks(bucket: str, query: dict[str, list[str]], project: str, stack: str) -> list[str]:
    import botocore.exceptions

    try:
        s3 = _s3(query)
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=LOCK_PREFIX):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise CheckFailed(f"cannot list locks in s3://{bucket}: {type(exc).__name__}") from None
    return sorted(k for k in keys if k.endswith(".json") and _matches(k, project, stack))
