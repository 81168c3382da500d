"""What the stack files declare for each static secret: own version, or a mirror's origin's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.spec import EnvironmentSpec
from kernel.spec.model import StaticSecret
from rotation.errors import BadInput
from rotation.kv import LiveMetadata
from rotation.stacks import StackTarget, load_stack
from rotation.vault import VaultTarget


@dataclass(frozen=True)
class Declared:
    """A static secret of one stack, with its effective declared version and interval."""

    stack: str
    vault: VaultTarget
    secret: StaticSecret
    version: int | None  # the secret's own version, or its origin's for a mirror
    declared_in: str  # the stack file the version comes from
    interval_seconds: int | None  # own rotation interval, or its origin's for a mirror
    interval_in: str

    @property
    def key(self) -> tuple[str, str]:
        """``(stack, secret id)``: unique across a multi-stack run."""
        return (self.stack, self.secret.id)


def _origin(root: Path, name: str, cache: dict[str, EnvironmentSpec],
            loaded: dict[str, EnvironmentSpec]) -> EnvironmentSpec:
    if name in loaded:
        return loaded[name]
    if name not in cache:
        cache[name] = load_stack(root, name)
    return cache[name]


def declare(root: Path, targets: Sequence[StackTarget]) -> list[Declared]:
    """Return every static secret of ``targets`` with its effective declared version.

    A mirror (``mirror_of: prod``) takes version and rotation interval from the
    origin stack's file, and its ``restores``: a rollback in prod is the
    mirror's too, because the dr apply writes prod's restored data at prod's
    version, and every earlier dr apply wrote prod's data at prod's version, so
    the mirror's version N+1 holds what its own version M holds (``verify``
    compares the two, ``record`` marks it). A mirror its origin does not
    declare with ``mirror_to_dr: true`` is a bad spec (exit 2), naming both files.
    """
    loaded = {t.name: t.spec for t in targets}
    cache: dict[str, EnvironmentSpec] = {}
    out: list[Declared] = []
    for target in targets:
        own_file = f"Pulumi.{target.name}.yaml"
        for secret in target.spec.static_secrets:
            if secret.mirror_of is None:
                out.append(Declared(target.name, target.vault, secret, secret.version, own_file,
                                    secret.rotation_interval_seconds, own_file))
                continue
            origin_file = f"Pulumi.{secret.mirror_of}.yaml"
            origin = _origin(root, secret.mirror_of, cache, loaded).secret(secret.id)
            if origin is None or not origin.mirror_to_dr:
                raise BadInput(
                    f"{own_file}: {secret.id} is mirror_of {secret.mirror_of} but {origin_file} "
                    "does not declare it with mirror_to_dr: true",
                    hint=f"set mirror_to_dr: true on {secret.id} in {origin_file}",
                )
            # The mirror's own entry declares no restores (mirror_of only): it is prod's.
            followed = secret.model_copy(update={"restores": origin.restores})
            out.append(Declared(target.name, target.vault, followed, origin.version, origin_file,
                                origin.rotation_interval_seconds, origin_file))
    return out


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
