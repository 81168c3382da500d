"""One worker's connection to Vault and one metadata read through it (urllib3, hvac's errors)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import hvac.utils
import urllib3
from urllib3.util.retry import Retry

from kernel.redact import display_url
from rotation.address import unreachable_hint
from rotation.errors import BadInput, VaultUnavailable
from rotation.kv import LiveMetadata, metadata_from_response
from rotation.live.declared import Declared
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, vault_errors


def check_token(token: str, token_env: str) -> None:
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


def check_ca_files() -> None:
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


def mapped_error(d: Declared, exc: Exception) -> BaseException:
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
