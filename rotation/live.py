"""Declared versions against live ones: the comparison pre-flight and verify share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, prod's); the *live* one is KV v2's ``current_version``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hvac

from infra.spec.model import EnvironmentSpec, StaticSecret
from rotation.kv import LiveMetadata, read_metadata
from rotation.stacks import load_stack
from rotation.vault import vault_errors


@dataclass(frozen=True)
class SecretState:
    """One secret's declared version and what Vault holds now."""

    secret: StaticSecret
    declared: int
    live: LiveMetadata | None

    @property
    def live_version(self) -> int:
        """The live ``current_version`` (0 when the secret does not exist yet)."""
        return 0 if self.live is None else self.live.current_version


def declared_versions(root: Path, spec: EnvironmentSpec) -> dict[str, int]:
    """Return ``{secret id: declared version}``, resolving dr mirrors through prod's file."""
    out: dict[str, int] = {}
    prod: EnvironmentSpec | None = None
    for secret in spec.static_secrets:
        if secret.version is not None:
            out[secret.id] = secret.version
            continue
        if prod is None:
            prod = load_stack(root, secret.mirror_of or "prod")
        source = prod.secret(secret.id)
        if source is not None and source.version is not None:
            out[secret.id] = source.version
    return out


def secret_states(
    client: hvac.Client, address: str, root: Path, spec: EnvironmentSpec
) -> list[SecretState]:
    """Read live metadata for every static secret of ``spec``."""
    declared = declared_versions(root, spec)
    states = []
    for secret in spec.static_secrets:
        with vault_errors(address, f"reading metadata of {secret.id}"):
            live = read_metadata(client, secret.mount, secret.path)
        states.append(SecretState(secret, declared.get(secret.id, 0), live))
    return states
