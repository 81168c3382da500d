"""Declared versions against live ones: what pre-flight, verify, record, drift and due share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, its origin's); the *live* one is KV v2's
``current_version``, read concurrently (metadata only, never values).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import hvac.utils
import urllib3
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from urllib3.util.retry import Retry

from kernel.redact import display_url
from kernel.spec import EnvironmentSpec
from kernel.spec.model import StaticSecret
from rotation.address import unreachable_hint
from rotation.errors import BadInput, VaultUnavailable
from rotation.kv import LiveMetadata, metadata_from_response
from rotation.stacks import StackTarget, load_stack
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, VaultTarget, read_token, vault_errors

MAX_WORKERS = 8  # threads (docs/benchmarks.md has the measurements behind the choice)
CHUNK = 32  # secrets a worker takes at a time (fewer for small runs)


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


def _check_token(token: str, token_env: str) -> None:
    """Refuse a token that cannot be an HTTP header value, before any request (never shown).

    urllib3 would send it as it is (a header injection) or refuse it with the value in
    its message.
    """
    try:
        value = token.encode("latin-1")
    except UnicodeEncodeError:
        value = b"\n"
    if any(c in value for c in b"\r\n\0"):
        raise BadInput(f"the token in {token_env} cannot be sent in an HTTP header",
                       hint=f"check {token_env}: it holds a line break or non-Latin-1 characters")


def _check_ca_files() -> None:
    """Refuse a configured CA file or directory that does not exist, before any request (exit 2).

    urllib3 would only fail (with an ``OSError``, not one of its own
    exceptions) on the first request.
    """
    for name in ("VAULT_CACERT", "VAULT_CAPATH"):
        value = os.environ.get(name)
        if value and not Path(value).exists():
            raise BadInput(f"cannot load the CA certificates for Vault: {name} names "
                           f"{value}, which does not exist",
                           hint="check VAULT_CACERT / VAULT_CAPATH")


def read_one(pool: urllib3.PoolManager, d: Declared, token: str) -> LiveMetadata | None:
    """Read one secret's metadata through ``pool`` (None if it does not exist).

    A failed answer raises hvac's exception for its status
    (``hvac.utils.raise_for_error``), so :func:`rotation.vault.vault_errors`
    maps it as it maps every hvac call; a network failure or an answer that
    is not KV v2 metadata is exit 3, naming the request, never a header.
    """
    base = d.vault.address.rstrip("/")
    url = f"{base}/v1/{quote(d.secret.mount)}/metadata/{quote(d.secret.path)}"
    what = f"reading metadata of {d.secret.id} ({d.stack})"
    try:
        response = pool.request("GET", url, headers={"X-Vault-Token": token,
                                                     "X-Vault-Request": "true"})
    except urllib3.exceptions.HTTPError as exc:
        cause = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
        raise VaultUnavailable(
            f"cannot reach Vault at {display_url(d.vault.address)} while {what} "
            f"({type(cause).__name__})",
            hint=unreachable_hint(d.vault.address),
        ) from None
    if response.status == 404:
        return None
    try:
        doc = json.loads(response.data) if response.data else None
    except ValueError:
        doc = None
    if response.status != 200:
        errors = doc.get("errors") if isinstance(doc, dict) else None
        hvac.utils.raise_for_error("GET", url, response.status, errors=errors,
                                   text=response.data.decode("utf-8", "replace"), json=doc)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise VaultUnavailable(
            f"Vault at {d.vault.address} answered while {what} with something that is not "
            "KV v2 metadata", hint="check the address: a proxy or another service may be "
            "answering")
    return metadata_from_response(d.secret.mount, d.secret.path, data)


def _mapped(d: Declared, exc: Exception) -> BaseException:
    """Return ``exc`` as :func:`rotation.vault.vault_errors` maps it for reading ``d``.

    Mapping only on failure keeps the context manager off the per-secret path;
    an exception it does not map comes back unchanged.
    """
    try:
        with vault_errors(d.vault.address, f"reading metadata of {d.secret.id} ({d.stack})"):
            raise exc
    except Exception as mapped:  # noqa: BLE001 - handed back to be raised by the caller
        return mapped
    raise AssertionError("unreachable: the block always raises")  # pragma: no cover


class _Scan:
    """Shared state of one :func:`read_live` run: the work left, the results, the first failure.

    Workers take chunks of secrets from one iterator (under a lock), keep their
    results in their own dict and advance the progress bar once per chunk.
    The first failure is kept and stops every worker before its next secret.
    """

    def __init__(self, declared: Sequence[Declared], *, chunk: int,
                 tokens: dict[VaultTarget, str], advance: Callable[[int], None]) -> None:
        self._chunks = iter([declared[i:i + chunk] for i in range(0, len(declared), chunk)])
        self._tokens = tokens
        self._advance = advance
        self._lock = threading.Lock()
        self.stop = False
        self.failure: BaseException | None = None
        self.parts: list[dict[tuple[str, str], LiveMetadata | None]] = []

    def _next_chunk(self) -> Sequence[Declared] | None:
        """Return the next chunk of secrets, or None when none is left or the run stopped."""
        with self._lock:
            return None if self.stop else next(self._chunks, None)

    def fail(self, exc: BaseException) -> None:
        """Keep ``exc`` if it is the first failure, and stop every worker."""
        with self._lock:
            if self.failure is None:
                self.failure = exc
            self.stop = True

    def work(self) -> None:
        """One worker thread: read chunks until none is left, or a failure stops the run."""
        mine: dict[tuple[str, str], LiveMetadata | None] = {}
        with self._lock:
            self.parts.append(mine)
        pools: dict[str, urllib3.PoolManager] = {}
        try:
            while (chunk := self._next_chunk()) is not None:
                for d in chunk:
                    if self.stop:
                        return
                    try:
                        pool = pools.get(d.vault.address)
                        if pool is None:
                            pool = pools[d.vault.address] = worker_pool(d.vault.address)
                        mine[d.key] = read_one(pool, d, self._tokens[d.vault])
                    except Exception as exc:  # noqa: BLE001 - mapped, kept, raised by read_live
                        self.fail(_mapped(d, exc))
                        return
                self._advance(len(chunk))
        except BaseException as exc:  # noqa: BLE001 - e.g. a progress bar failing: kept, raised
            self.fail(exc)
        finally:
            for pool in pools.values():
                pool.clear()

def worker_pool(address: str) -> urllib3.PoolManager:
    """Return one worker's urllib3 pool for ``address``: one keep-alive connection.

    The trust is what every command uses: ``VAULT_CACERT`` / ``VAULT_CAPATH``
    when set (else the system's), ``VAULT_CLIENT_CERT`` / ``VAULT_CLIENT_KEY``
    for a client certificate; the proxy is the environment's for that host
    (``urllib.request.getproxies``, as requests reads it). urllib3 retries a
    request once when its connection fails: a kept-alive connection the server
    or a load balancer dropped meanwhile is opened again (a GET changes nothing).
    """
    options: dict[str, Any] = {
        "maxsize": 1, "timeout": urllib3.Timeout(DEFAULT_TIMEOUT_SECONDS),
        "retries": Retry(total=1, connect=1, read=1, status=0, redirect=0),
        "ca_certs": os.environ.get("VAULT_CACERT") or None,
        "ca_cert_dir": os.environ.get("VAULT_CAPATH") or None,
        "cert_file": os.environ.get("VAULT_CLIENT_CERT") or None,
        "key_file": os.environ.get("VAULT_CLIENT_KEY") or None,
    }
    parts = urlsplit(address)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def read_live(
    declared: Sequence[Declared], *, description: str = "reading KV metadata",
    progress_console: Console | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). ``MAX_WORKERS`` threads take chunks of secrets from a shared
    list; each keeps one urllib3 pool (one keep-alive connection) per Vault
    (:func:`worker_pool`). The first failure (unreachable, sealed, denied)
    stops the run with its documented exit code.
    """
    tokens = {d.vault: read_token(d.vault.token_env) for d in declared}
    results: dict[tuple[str, str], LiveMetadata | None] = {}
    if not declared:
        return results
    for vault, token in tokens.items():  # refused before any request
        _check_token(token, vault.token_env)
    _check_ca_files()
    workers = max(1, min(MAX_WORKERS, len(declared)))
    chunk = max(1, min(CHUNK, len(declared) // (workers * 4)))
    console = progress_console or Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task(description, total=len(declared))
        scan = _Scan(declared, chunk=chunk, tokens=tokens,
                     advance=lambda n: progress.advance(task, n))
        threads = [threading.Thread(target=scan.work, name=f"kv-metadata-{i}", daemon=True)
                   for i in range(workers)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:  # an interrupt: let the workers finish their request and close their sockets
            scan.stop = True
            for thread in threads:
                if thread.ident is not None:
                    thread.join()
    if scan.failure is not None:
        raise scan.failure
    for part in scan.parts:
        results.update(part)
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
