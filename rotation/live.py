"""Declared versions against live ones: what pre-flight, verify, record, drift and due share.

For each static secret of a stack the *declared* version is the stack file's
(or, for a dr mirror, its origin's); the *live* one is KV v2's
``current_version``, read concurrently (metadata only, never values).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlsplit

import certifi
import httptools
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

MAX_WORKERS = 8  # measured: 4 and 8 cost the same CPU here, 16 more; 8 for network latency
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


class _Dropped(Exception):
    """The server closed the connection (or reset it) before a complete response."""


class _HttpConnection:
    """One keep-alive HTTP/1.1 connection to one Vault address, one request in flight.

    A plain socket (TLS-wrapped for ``https``) and httptools' C response
    parser (llhttp): bodies by Content-Length, chunked or (rarely) up to the
    server's close are collected through ``on_body``; ``Connection: close``
    or an HTTP/1.0 answer closes the socket after the response, and the next
    request connects again. No pipelining. Failures raise what requests would
    (``ConnectionError``, ``ConnectTimeout``, ``ReadTimeout``, ``SSLError``),
    naming the request line only: never a header, so never the token.
    """

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        self._host = host
        self._port = port
        self._tls = tls
        self._sock: socket.socket | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._body: list[bytes] = []
        self._status = 0
        self._keep_alive = False
        self._complete = False

    # httptools callbacks (only the ones defined here are wired into the parser)
    def on_body(self, chunk: bytes) -> None:
        """Collect a piece of the response body (httptools callback)."""
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        """Note status and keep-alive before llhttp resets its flags (httptools callback)."""
        parser = cast(httptools.HttpResponseParser, self._parser)
        status = parser.get_status_code()
        if status < 200:  # an interim 1xx answer: the real one follows
            self._body = []
            return
        if self._complete:  # a second answer to one request: out of step, give up on it
            raise ValueError("more than one response to one request")  # -> HttpParserError
        self._status = status
        self._keep_alive = parser.should_keep_alive()
        self._complete = True

    def close(self) -> None:
        """Close the socket (the next request connects again)."""
        sock, self._sock, self._parser = self._sock, None, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connect(self, what: str) -> socket.socket:
        """Open the socket (TCP_NODELAY; TLS with the run's trust for ``https``) and its parser."""
        try:
            sock = socket.create_connection((self._host, self._port),
                                            timeout=DEFAULT_TIMEOUT_SECONDS)
        except TimeoutError:
            raise requests.exceptions.ConnectTimeout(f"{what}: connect timed out") from None
        except OSError as exc:
            raise requests.exceptions.ConnectionError(
                f"{what}: cannot connect ({type(exc).__name__})") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._host)
        except TimeoutError:
            sock.close()
            raise requests.exceptions.ConnectTimeout(f"{what}: TLS handshake timed out") from None
        except ssl.SSLError as exc:
            sock.close()
            raise requests.exceptions.SSLError(
                f"{what}: TLS failed ({type(exc).__name__}: {exc.reason})") from None
        except OSError as exc:
            sock.close()
            raise requests.exceptions.ConnectionError(
                f"{what}: TLS handshake failed ({type(exc).__name__})") from None
        self._sock = sock
        self._parser = httptools.HttpResponseParser(self)
        return sock

    def _roundtrip(self, sock: socket.socket, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` and read its whole response; close the socket if not kept alive."""
        parser = cast(httptools.HttpResponseParser, self._parser)
        self._body = []
        self._complete = False
        received: list[bytes] = []
        sock.sendall(request)
        while not self._complete:
            data = sock.recv(_RECV_BYTES)
            if not data:
                if received and _ends_at_close(b"".join(received)):
                    self._status = parser.get_status_code()
                    self._keep_alive = False
                    break
                raise _Dropped("connection closed before a complete response"
                               if received else "connection closed")
            received.append(data)
            parser.feed_data(data)
        if not self._keep_alive:
            self.close()
        body = self._body
        return self._status, body[0] if len(body) == 1 else b"".join(body)

    def request(self, request: bytes, what: str) -> tuple[int, bytes]:
        """Send ``request`` (a whole GET) and return ``(status, body)``.

        A kept-alive connection the server closed meanwhile is reconnected
        once, as a pooled requests session would (GET is idempotent); so is
        one that answers 408 at once (a server timing out the idle
        connection, as Go's HTTP client treats it).
        """
        for attempt in (1, 2):
            sock = self._sock
            reused = sock is not None
            if sock is None:
                sock = self._connect(what)
            try:
                status, body = self._roundtrip(sock, request)
            except TimeoutError:
                self.close()
                raise requests.exceptions.ReadTimeout(f"{what} timed out") from None
            except (_Dropped, OSError) as exc:
                self.close()
                if attempt == 1 and reused:
                    continue
                reason = exc.args[0] if isinstance(exc, _Dropped) else type(exc).__name__
                raise requests.exceptions.ConnectionError(f"{what}: {reason}") from None
            except (httptools.HttpParserError, httptools.HttpParserUpgrade):
                self.close()
                raise requests.exceptions.ConnectionError(
                    f"{what}: malformed HTTP response") from None
            if status == 408 and attempt == 1 and reused:
                self.close()
                continue
            return status, body
        raise AssertionError("unreachable: attempt 2 returns or raises")  # pragma: no cover


def _ends_at_close(raw: bytes) -> bool:
    """Whether a response whose connection closed is complete: headers, then a close-delimited body.

    That is a response with neither Content-Length nor Transfer-Encoding
    (its body runs to the close); any other response cut short is truncated.
    """
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    lowered = head.lower()
    return b"\ncontent-length:" not in lowered and b"\ntransfer-encoding:" not in lowered


_RECV_BYTES = 65536


class _MetadataReader:
    """One worker thread's keep-alive connections (:class:`_HttpConnection`), one per Vault.

    A pre-formatted request and httptools' C parser cost a fraction of
    hvac's per-call CPU (requests session, adapters, hooks, the email
    package's header parsing), which is what bounds a scan of thousands of
    secrets. Errors go through the same paths as hvac's: a failed response
    raises hvac's exception for its status (``hvac.utils.raise_for_error``)
    and a network failure raises requests' ``ConnectionError``/``Timeout``, so
    :func:`rotation.vault.vault_errors` maps both exactly as it maps hvac calls.
    """

    def __init__(self, tokens: dict[VaultTarget, str], tls: ssl.SSLContext | None) -> None:
        self._tokens = tokens
        self._tls = tls
        self._conns: dict[str, _HttpConnection] = {}
        self._prefix: dict[str, str] = {}  # address -> URL path prefix
        self._suffix: dict[VaultTarget, bytes] = {}  # the request after its path

    def _connection(self, address: str) -> _HttpConnection:
        """Return this worker's connection to ``address`` (opened on its first request)."""
        conn = self._conns.get(address)
        if conn is None:
            parts = urlsplit(address)
            https = parts.scheme == "https"
            conn = _HttpConnection(parts.hostname or "", parts.port or (443 if https else 80),
                                   self._tls if https else None)
            self._conns[address] = conn
        return conn

    def _request_suffix(self, vault: VaultTarget) -> bytes:
        """Return the request after its path: version, Host, token and the fixed headers."""
        suffix = self._suffix.get(vault)
        if suffix is None:
            parts = urlsplit(vault.address)
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            default = 443 if parts.scheme == "https" else 80
            if parts.port is not None and parts.port != default:
                host = f"{host}:{parts.port}"
            try:
                host_bytes = host.encode("ascii")
            except UnicodeEncodeError:  # as http.client does
                host_bytes = host.encode("idna")
            suffix = self._suffix[vault] = (
                b" HTTP/1.1\r\nHost: " + host_bytes + b"\r\nX-Vault-Token: "
                + _header_value(self._tokens[vault], vault.token_env)
                + b"\r\nX-Vault-Request: true\r\nAccept: application/json\r\n"
                  b"Accept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n")
        return suffix

    def read(self, d: Declared) -> LiveMetadata | None:
        """Return the metadata of one secret (None if it does not exist)."""
        address = d.vault.address
        base = self._prefix.get(address)
        if base is None:
            base = self._prefix[address] = urlsplit(address).path.rstrip("/")
        url = quote(f"{base}/v1/{d.secret.mount}/metadata/{d.secret.path}", safe=_URL_SAFE)
        status, body = self._connection(address).request(
            b"GET " + url.encode("ascii") + self._request_suffix(d.vault), f"GET {url}")
        if status == 200:
            try:
                data = json.loads(body)["data"]
            except (ValueError, TypeError, KeyError):
                data = None
            if not isinstance(data, dict):
                raise requests.exceptions.InvalidJSONError(
                    f"GET {url}: the answer is not KV v2 metadata")
            return metadata_from_response(d.secret.mount, d.secret.path, data)
        if status == 404:
            return None
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        errors = doc.get("errors") if isinstance(doc, dict) else None
        hvac.utils.raise_for_error("GET", url, status, errors=errors,
                                   text=body.decode("utf-8", "replace"), json=doc)
        raise AssertionError("unreachable: raise_for_error always raises")  # pragma: no cover

    def close(self) -> None:
        """Close every connection."""
        for conn in self._conns.values():
            conn.close()


def _header_value(token: str, token_env: str) -> bytes:
    """Return ``token`` as an HTTP header value; one that cannot be sent is exit 2 (never shown)."""
    try:
        value = token.encode("latin-1")
    except UnicodeEncodeError:
        value = b"\n"
    if any(c in value for c in b"\r\n\0"):
        raise BadInput(f"the token in {token_env} cannot be sent in an HTTP header",
                       hint=f"check {token_env}: it holds a line break or non-Latin-1 characters")
    return value


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

    Not when a proxy applies (requests honours proxy variables, the bare
    reader does not), a client certificate is configured, or the address is
    not plain HTTP(S) with a valid port: those runs keep the hvac reader.
    """
    if os.environ.get("VAULT_CLIENT_CERT"):
        return False
    proxies = urllib.request.getproxies()
    for address in addresses:
        parts = urlsplit(address)
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            return False
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            return False
        if (proxies.get(parts.scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(
                parts.hostname):
            return False
    return True


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

    def __init__(self, declared: Sequence[Declared], *, chunk: int, lean: bool,
                 tokens: dict[VaultTarget, str], tls: ssl.SSLContext | None,
                 advance: Callable[[int], None]) -> None:
        self._chunks = iter([declared[i:i + chunk] for i in range(0, len(declared), chunk)])
        self._lean = lean
        self._tokens = tokens
        self._tls = tls
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
        reader = _MetadataReader(self._tokens, self._tls) if self._lean else None
        clients: dict[VaultTarget, hvac.Client] = {}
        try:
            while (chunk := self._next_chunk()) is not None:
                for d in chunk:
                    if self.stop:
                        return
                    try:
                        if reader is not None:
                            mine[d.key] = reader.read(d)
                        else:
                            mine[d.key] = read_metadata(self._client(clients, d.vault),
                                                        d.secret.mount, d.secret.path)
                    except Exception as exc:  # noqa: BLE001 - mapped, kept, raised by read_live
                        self.fail(_mapped(d, exc))
                        return
                self._advance(len(chunk))
        except BaseException as exc:  # noqa: BLE001 - e.g. a progress bar failing: kept, raised
            self.fail(exc)
        finally:
            if reader is not None:
                reader.close()
            for client in clients.values():
                client.adapter.close()

    def _client(self, clients: dict[VaultTarget, hvac.Client], vault: VaultTarget) -> hvac.Client:
        """Return this worker's hvac client for ``vault`` (the proxy / client-certificate path)."""
        client = clients.get(vault)
        if client is None:
            client = clients[vault] = hvac.Client(url=vault.address, token=self._tokens[vault],
                                                  timeout=DEFAULT_TIMEOUT_SECONDS)
        return client


def read_live(
    declared: Sequence[Declared], *, description: str = "reading KV metadata",
    progress_console: Console | None = None,
) -> dict[tuple[str, str], LiveMetadata | None]:
    """Read every secret's live metadata concurrently; ``None`` where it does not exist.

    Tokens are resolved up front (a missing variable is exit 2 before any
    request). ``MAX_WORKERS`` threads take chunks of secrets from a shared
    list; each keeps one keep-alive HTTP connection per Vault
    (:class:`_MetadataReader`; an hvac client where a proxy or client
    certificate is configured). The first failure (unreachable, sealed,
    denied) stops the run with its documented exit code.
    """
    tokens = {d.vault: read_token(d.vault.token_env) for d in declared}
    results: dict[tuple[str, str], LiveMetadata | None] = {}
    if not declared:
        return results
    addresses = {d.vault.address for d in declared}
    lean = _lean_reader_applies(addresses)
    tls = None
    if lean and any(urlsplit(a).scheme == "https" for a in addresses):
        try:
            tls = _tls_context()
        except (OSError, ssl.SSLError) as exc:
            raise BadInput(f"cannot load the CA certificates for Vault ({type(exc).__name__}: "
                           f"{exc.strerror or exc})",
                           hint="check VAULT_CACERT / VAULT_CAPATH / REQUESTS_CA_BUNDLE") from None
    if lean:  # a token that cannot be a header value is refused before any request
        for vault, token in tokens.items():
            _header_value(token, vault.token_env)
    workers = max(1, min(MAX_WORKERS, len(declared)))
    chunk = max(1, min(CHUNK, len(declared) // (workers * 4)))
    console = progress_console or Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        console=console, transient=True, disable=not console.is_terminal)
    with progress:
        task = progress.add_task(description, total=len(declared))
        scan = _Scan(declared, chunk=chunk, lean=lean, tokens=tokens, tls=tls,
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
