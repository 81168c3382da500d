"""Checks on static-secret values that never echo them (no Pulumi import: the CLI uses these).

A provided value is a JSON object with exactly the declared keys; a mirror
entry is prod's ``{"version": N, "data": {...}}``. Errors name the secret,
the origin and the keys, never a value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


class SecretValueError(ValueError):
    """A provided or mirrored value does not match the declared keys (no value is shown)."""


def check_keys(
    secret_id: str, declared: Sequence[str], data: object, origin: str
) -> dict[str, str]:
    """Return ``data`` if it is a ``{key: str}`` object with exactly the declared keys."""
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise SecretValueError(f"{origin}: value for {secret_id} must be a JSON object of strings")
    if set(data) != set(declared):
        raise SecretValueError(
            f"{origin}: value for {secret_id} has keys {sorted(data)}, declared {sorted(declared)}"
        )
    return {key: str(data[key]) for key in declared}


def parse_provided(
    secret_id: str, declared: Sequence[str], raw: str, origin: str
) -> dict[str, str]:
    """Parse a provided secret's config value (a JSON object) without echoing it on error."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise SecretValueError(f"{origin}: value for {secret_id} is not a JSON object") from None
    return check_keys(secret_id, declared, data, origin)


def mirror_entry(secret_id: str, mirrors: object, origin: str) -> Mapping[str, Any]:
    """Return prod's ``dr_mirror`` entry for ``secret_id`` or say how to publish it."""
    entry = mirrors.get(secret_id) if isinstance(mirrors, Mapping) else None
    if not isinstance(entry, Mapping) or "version" not in entry or "data" not in entry:
        raise SecretValueError(
            f"{origin}: {secret_id} is mirror_of prod but prod's dr_mirror output lacks it; "
            "set mirror_to_dr: true in Pulumi.prod.yaml and apply prod first"
        )
    return entry
