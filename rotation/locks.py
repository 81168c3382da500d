"""Is a Pulumi update running on a stack? Read the self-managed backend's lock files.

Self-managed backends (``file://``, ``s3://``) hold a lock object under
``.pulumi/locks/`` while an update runs: ``<org>/<project>/<stack>/<id>.json``
for project-scoped stacks (older layouts: ``<stack>/<id>.json``). The backend
URL is ``--backend`` or ``$PULUMI_BACKEND_URL``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from rotation.errors import BadInput, CheckFailed

LOCK_PREFIX = ".pulumi/locks/"


@dataclass(frozen=True)
class LockStatus:
    """Lock objects found for a stack."""

    backend: str
    locks: tuple[str, ...]


def _matches(key: str, project: str, stack: str) -> bool:
    rel = key[len(LOCK_PREFIX):] if key.startswith(LOCK_PREFIX) else key
    parts = rel.split("/")
    return (len(parts) >= 2 and parts[-2] == stack
            and (len(parts) == 2 or (len(parts) >= 3 and parts[-3] == project)))


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
    raise BadInput(f"backend {backend!r}: only file:// and s3:// backends keep readable locks")


def _s3_locks(bucket: str, query: dict[str, list[str]], project: str, stack: str) -> list[str]:
    import boto3
    import botocore.exceptions

    kwargs: dict[str, str] = {}
    if "endpoint" in query:
        scheme = "http" if query.get("disableSSL", ["false"])[0] == "true" else "https"
        kwargs["endpoint_url"] = f"{scheme}://{query['endpoint'][0]}"
    if "region" in query:
        kwargs["region_name"] = query["region"][0]
    try:
        s3 = boto3.client("s3", **kwargs)
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=LOCK_PREFIX):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise CheckFailed(f"cannot list locks in s3://{bucket}: {type(exc).__name__}") from None
    return sorted(k for k in keys if k.endswith(".json") and _matches(k, project, stack))
