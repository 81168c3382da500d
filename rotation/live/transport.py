"""A session to one Vault and one metadata read through it (aiohttp, hvac's errors)."""

from __future__ import annotations

import json
import os
import ssl
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp
import hvac.utils
import yarl

from kernel.redact import display_url
from rotation.address import unreachable_hint
from rotation.errors import BadInput, VaultUnavailable
from rotation.kv import LiveMetadata, metadata_from_response
from rotation.live.declared import Declared
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, vault_errors


def check_token(token: str, token_env: str) -> None:
    """Refuse a token that cannot be an HTTP header value, before any request (never shown).

    An HTTP client would send it as it is (a header injection) or refuse it with the
    value in its message.
    """
    try:
        value = token.encode("latin-1")
    except UnicodeEncodeError:
        value = b"\n"
    if any(c in value for c in b"\r\n\0"):
        raise BadInput(f"the token in {token_env} cannot be sent in an HTTP header",
                       hint=f"check {token_env}: it holds a line break or non-Latin-1 characters")


def check_ca_files() -> None:
    """Refuse a configured CA file or directory that does not exist, before any request (exit 2).

    The TLS context would fail with an ``OSError`` naming only the errno.
    """
    for name in ("VAULT_CACERT", "VAULT_CAPATH"):
        value = os.environ.get(name)
        if value and not Path(value).exists():
            raise BadInput(f"cannot load the CA certificates for Vault: {name} names "
                           f"{value}, which does not exist",
                           hint="check VAULT_CACERT / VAULT_CAPATH")


async def _get(session: aiohttp.ClientSession, address: str, url: yarl.URL, token: str,
               what: str) -> tuple[int, bytes]:
    """GET ``url``; return status and body, or exit 3 naming ``what`` on a network failure.

    aiohttp sends an idempotent request once more when its connection fails
    before an answer: a kept-alive connection the server or a load balancer
    dropped meanwhile is opened again (a GET changes nothing).
    """
    try:
        async with session.get(url, headers={"X-Vault-Token": token, "X-Vault-Request": "true"},
                               allow_redirects=False) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        # A refused certificate is named as hvac's calls name it in every other command.
        kind = "SSLError" if isinstance(exc, aiohttp.ClientSSLError) else type(exc).__name__
        raise VaultUnavailable(
            f"cannot reach Vault at {display_url(address)} while {what} ({kind})",
            hint=unreachable_hint(address),
        ) from None


def _json(body: bytes) -> object:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _raise_for(url: yarl.URL, status: int, body: bytes, doc: object) -> None:
    """Raise hvac's exception for a failed answer, so :func:`vault_errors` maps it."""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    hvac.utils.raise_for_error("GET", str(url), status, errors=errors,
                               text=body.decode("utf-8", "replace"), json=doc)


async def read_one(session: aiohttp.ClientSession, d: Declared,
                   token: str) -> LiveMetadata | None:
    """Read one secret's metadata through ``session`` (None if it does not exist).

    A failed answer raises hvac's exception for its status
    (``hvac.utils.raise_for_error``), so :func:`rotation.vault.vault_errors`
    maps it as it maps every hvac call; a network failure or an answer that
    is not KV v2 metadata is exit 3, naming the request, never a header.
    """
    base = d.vault.address.rstrip("/")
    url = yarl.URL(f"{base}/v1/{quote(d.secret.mount)}/metadata/{quote(d.secret.path)}",
                   encoded=True)
    what = f"reading metadata of {d.secret.id} ({d.stack})"
    status, body = await _get(session, d.vault.address, url, token, what)
    if status == 404:
        return None
    doc = _json(body)
    if status != 200:
        _raise_for(url, status, body, doc)
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise VaultUnavailable(
            f"Vault at {d.vault.address} answered while {what} with something that is not "
            "KV v2 metadata", hint="check the address: a proxy or another service may be "
            "answering")
    return metadata_from_response(d.secret.mount, d.secret.path, data)


async def path_exists(session: aiohttp.ClientSession, address: str, path: str,
                      token: str) -> bool:
    """Whether ``GET /v1/<path>`` finds something (2xx) or nothing (404); else hvac's error.

    Any success counts, as for hvac's adapter, which raises only from 400 on.
    """
    url = yarl.URL(f"{address.rstrip('/')}/v1/{path}")
    status, body = await _get(session, address, url, token, f"reading {path}")
    if 200 <= status < 300:
        return True
    if status != 404:
        _raise_for(url, status, body, _json(body))
    return False


def mapped_error(address: str, what: str, exc: Exception) -> BaseException:
    """Return ``exc`` as :func:`rotation.vault.vault_errors` maps it while ``what``.

    Mapping only on failure keeps the context manager off the per-request path;
    an exception it does not map comes back unchanged.
    """
    try:
        with vault_errors(address, what):
            raise exc
    except Exception as mapped:  # noqa: BLE001 - handed back to be raised by the caller
        return mapped
    raise AssertionError("unreachable: the block always raises")  # pragma: no cover


def _set(*names: str) -> str:
    """``NAME=value`` of each variable set (paths, never a key's content), for a message."""
    return ", ".join(f"{n}={os.environ[n]}" for n in names if os.environ.get(n))


def _tls_context() -> ssl.SSLContext:
    """Build the trust and client certificate every command uses; exit 2 naming what is bad.

    A file that exists but holds no certificate (or a key that does not match)
    fails here, before any request; a missing one was refused by
    :func:`check_ca_files`.
    """
    try:
        context = ssl.create_default_context(cafile=os.environ.get("VAULT_CACERT") or None,
                                             capath=os.environ.get("VAULT_CAPATH") or None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise BadInput(f"cannot load the CA certificates for Vault from "
                       f"{_set('VAULT_CACERT', 'VAULT_CAPATH')} ({type(exc).__name__})",
                       hint="check VAULT_CACERT / VAULT_CAPATH: PEM certificates") from None
    cert = os.environ.get("VAULT_CLIENT_CERT")
    if cert:
        try:
            context.load_cert_chain(cert, os.environ.get("VAULT_CLIENT_KEY") or None)
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot load the client certificate for Vault from "
                           f"{_set('VAULT_CLIENT_CERT', 'VAULT_CLIENT_KEY')} "
                           f"({type(exc).__name__})",
                           hint="check VAULT_CLIENT_CERT / VAULT_CLIENT_KEY: a PEM certificate "
                                "and its unencrypted key") from None
    return context


def vault_session(address: str, connections: int) -> aiohttp.ClientSession:
    """Return an aiohttp session for ``address`` with at most ``connections`` kept alive.

    Call it inside the event loop that uses it. The trust is what every command
    uses: ``VAULT_CACERT`` / ``VAULT_CAPATH`` when set (else the system's),
    ``VAULT_CLIENT_CERT`` / ``VAULT_CLIENT_KEY`` for a client certificate; the
    proxy is the environment's for that host (``urllib.request.getproxies``, as
    requests reads it; no ``.netrc``). Timeouts are per connect and per read,
    as hvac's are: an answer that trickles in is read, one that never comes is not.
    """
    context = _tls_context()
    parts = urlsplit(address)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and urllib.request.proxy_bypass(parts.hostname or ""):
        proxy = None
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, ssl=context),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=DEFAULT_TIMEOUT_SECONDS,
                                      sock_read=DEFAULT_TIMEOUT_SECONDS),
        proxy=proxy or None, trust_env=False)
