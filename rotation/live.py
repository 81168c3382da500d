"""Declared versions against live ones: what pre-flight, verify, record, drift and due share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, its origin's); the *live* one is KV v2's
``current_version``, read concurrently (metadata only, never values).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import hvac
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from infra.spec import EnvironmentSpec
from infra.spec.model import StaticSecret
from rotation.errors import BadInput
from rotation.kv import LiveMetadata, read_metadata
from rotation.stacks import StackTarget, load_stack
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, VaultTarget, read_token, vault_errors

MAX_WORKERS = 16


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
    origin stack's file; a mirror its origin does not declare with
    ``mirror_to_dr: true`` is a bad spec (exit 2), naming both files.
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
            out.append(Declared(target.name, target.vault, secret, origin.version, origin_file,
                                origin.rotation_interval_seconds, origin_file))
    return out


def read_live(
    declared: Sequence[Declared], *, description: str = "reading KV metadata",
    progress_console: Console | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). Each worker thread keeps one hvac client (one keep-alive HTTP
    session) per Vault. The first failure (unreachable, sealed, denied) stops
    the run with its documented exit code.
    """
    tokens = {d.vault: read_token(d.vault.token_env) for d in declared}
    local = threading.local()

    def client_for(vault: VaultTarget) -> hvac.Client:
        clients: dict[VaultTarget, hvac.Client] = local.__dict__.setdefault("clients", {})
        if vault not in clients:
            clients[vault] = hvac.Client(url=vault.address, token=tokens[vault],
                                         timeout=DEFAULT_TIMEOUT_SECONDS)
        return clients[vault]

    def read_one(d: Declared) -> LiveMetadata | None:
        with vault_errors(d.vault.address, f"reading metadata of {d.secret.id} ({d.stack})"):
            return read_metadata(client_for(d.vault), d.secret.mount, d.secret.path)

    results: dict[tuple[str, str], LiveMetadata | None] = {}
    if not declared:
        return results
    console = progress_console or Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(declared)),
                              thread_name_prefix="kv-metadata")
    try:
        with progress:
            task = progress.add_task(description, total=len(declared))
            futures: dict[Future[LiveMetadata | None], Declared] = {
                pool.submit(read_one, d): d for d in declared}
            for future in as_completed(futures):
                results[futures[future].key] = future.result()
                progress.advance(task)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


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


def secret_states(root: Path, target: StackTarget) -> list[SecretState]:
    """Read live metadata for every static secret of ``target`` (concurrently)."""
    declared = declare(root, [target])
    live = read_live(declared, description=f"{target.name}: reading KV metadata")
    return [SecretState(d.secret, d.version or 0, live[d.key]) for d in declared]
