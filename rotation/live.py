"""Declared versions against live ones: what pre-flight, verify, record, drift and due share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, its origin's); the *live* one is KV v2's
``current_version``, read concurrently (metadata only, never values).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import urllib.request
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlsplit

import certifi
import hvac
import hvac.utils
import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from infra.spec import EnvironmentSpec
from infra.spec.model import StaticSecret
from rotation.errors import BadInput
from rotation.kv import LiveMetadata, metadata_from_response, read_metadata
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


class _MetadataReader:
    """One worker thread's keep-alive HTTP/1.1 connections, one per Vault address.

    A bare ``http.client`` connection costs a fraction of hvac's per-call CPU
    (requests session, adapters, hooks), which is what bounds a scan of
    thousands of secrets. Errors go through the same paths as hvac's: a failed
    response raises hvac's exception for its status (``hvac.utils.raise_for_error``)
    and a network failure raises requests' ``ConnectionError``/``Timeout``, so
    :func:`rotation.vault.vault_errors` maps both exactly as it maps hvac calls.
    """

    def __init__(self, tokens: dict[VaultTarget, str], opened: list[http.client.HTTPConnection],
                 lock: threading.Lock) -> None:
        self._tokens = tokens
        self._opened = opened
        self._lock = lock
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def _connection(self, address: str) -> http.client.HTTPConnection:
        conn = self._conns.get(address)
        if conn is None:
            parts = urlsplit(address)
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(parts.hostname or "", parts.port,
                                                   timeout=DEFAULT_TIMEOUT_SECONDS,
                                                   context=_tls_context())
            else:
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                  timeout=DEFAULT_TIMEOUT_SECONDS)
            self._conns[address] = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def read(self, d: Declared) -> LiveMetadata | None:
        """Return the metadata of one secret (None if it does not exist)."""
        base = urlsplit(d.vault.address).path.rstrip("/")
        url = quote(f"{base}/v1/{d.secret.mount}/metadata/{d.secret.path}", safe=_URL_SAFE)
        headers = {"X-Vault-Token": self._tokens[d.vault], "X-Vault-Request": "true",
                   "Accept": "application/json"}
        for attempt in (1, 2):
            conn = self._connection(d.vault.address)
            reused = conn.sock is not None
            try:
                conn.request("GET", url, headers=headers)
                response = conn.getresponse()
                body = response.read()
                break
            except TimeoutError:
                conn.close()
                raise requests.exceptions.ReadTimeout(f"GET {url} timed out") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A kept-alive connection the server closed meanwhile: reconnect once, as a
                # pooled requests session would (GET is idempotent).
                if attempt == 1 and reused:
                    continue
                raise requests.exceptions.ConnectionError(
                    f"GET {url}: {type(exc).__name__}") from None
        if response.status == 200:
            return metadata_from_response(d.secret.mount, d.secret.path,
                                          json.loads(body)["data"])
        if response.status == 404:
            return None
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        hvac.utils.raise_for_error("GET", url, response.status, errors=errors,
                                   text=body.decode("utf-8", "replace"), json=doc)
        raise AssertionError("unreachable: raise_for_error always raises")  # pragma: no cover


_URL_SAFE = "/:@!$&'()*+,;=-._~%"


def _tls_context() -> ssl.SSLContext:
    """Return the TLS trust hvac/requests would use.

    That is VAULT_CACERT, VAULT_CAPATH, the requests bundle variables, else
    certifi's bundle.
    """
    cafile = os.environ.get("VAULT_CACERT") or None
    capath = None if cafile else os.environ.get("VAULT_CAPATH") or None
    if cafile is None and capath is None:
        cafile = (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                  or certifi.where())
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _lean_reader_applies(addresses: set[str]) -> bool:
    """Whether the bare-HTTP reader can stand in for hvac on every address.

    Not when a proxy applies (requests honours proxy variables, ``http.client``
    does not), a client certificate is configured, or the scheme is not HTTP(S):
    those runs keep the hvac reader.
    """
    if os.environ.get("VAULT_CLIENT_CERT"):
        return False
    proxies = urllib.request.getproxies()
    for address in addresses:
        parts = urlsplit(address)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return False
        if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(
                parts.hostname):
            return False
    return True


def read_live(
    declared: Sequence[Declared], *, description: str = "reading KV metadata",
    progress_console: Console | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). Each worker thread keeps one keep-alive HTTP connection per Vault
    (:class:`_MetadataReader`; an hvac client where a proxy or client
    certificate is configured). The first failure (unreachable, sealed,
    denied) stops the run with its documented exit code.
    """
    tokens = {d.vault: read_token(d.vault.token_env) for d in declared}
    local = threading.local()
    opened: list[http.client.HTTPConnection] = []
    lock = threading.Lock()
    lean = _lean_reader_applies({d.vault.address for d in declared})

    def client_for(vault: VaultTarget) -> hvac.Client:
        clients: dict[VaultTarget, hvac.Client] = local.__dict__.setdefault("clients", {})
        if vault not in clients:
            clients[vault] = hvac.Client(url=vault.address, token=tokens[vault],
                                         timeout=DEFAULT_TIMEOUT_SECONDS)
        return clients[vault]

    def read_one(d: Declared) -> LiveMetadata | None:
        with vault_errors(d.vault.address, f"reading metadata of {d.secret.id} ({d.stack})"):
            if lean:
                reader = local.__dict__.get("reader")
                if reader is None:
                    reader = local.reader = _MetadataReader(tokens, opened, lock)
                return cast(_MetadataReader, reader).read(d)
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
        for conn in opened:
            conn.close()
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
