"""The Vault client behind a small interface: hvac, with errors mapped to ours.

Every command reaches Vault through :func:`connect` and runs its calls inside
:func:`vault_errors`, so a refused connection, a sealed or standby server, a
missing permission or a CAS refusal always ends in the documented exit code
and a message that says what to do, never in a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions
import requests

from kernel.redact import display_url
from rotation.address import unreachable_hint
from rotation.errors import BadInput, CasConflict, CheckFailed, VaultUnavailable

DEFAULT_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class VaultTarget:
    """Address and token source of the Vault a command talks to."""

    address: str
    token_env: str = "VAULT_TOKEN"  # noqa: S105 - a variable name, not a token


def token_problem(token: str) -> str | None:
    """Say what makes ``token`` unusable as a Vault token, without showing it (None: usable).

    Vault and OpenBao tokens are printable ASCII without whitespace; anything
    else cannot travel in the ``X-Vault-Token`` header (requests refuses a
    line break, http.client cannot encode a non-Latin-1 character) and is a
    token pasted with its neighbourhood, not a token.
    """
    if any(c in "\r\n" for c in token):
        return "holds a line break (pasted with its newline?)"
    if any(c.isspace() for c in token):
        return "holds whitespace"
    if not token.isascii():
        return "holds a non-ASCII character"
    if not token.isprintable():
        return "holds a control character"
    return None


def read_token(token_env: str) -> str:
    """Return the token from environment variable ``token_env`` (never from an argument).

    The one check at the boundary: every command that sends a token reads it
    here, so a token that is not printable ASCII is bad input (exit 2) before
    any request, never a traceback or a network error.
    """
    token = os.environ.get(token_env, "")
    if not token:
        raise BadInput(
            f"environment variable {token_env} is not set",
            hint=f"export {token_env}=... or put it in the --env-file",
        )
    problem = token_problem(token)
    if problem is not None:
        raise BadInput(
            f"the token in {token_env} {problem}: a Vault token is printable ASCII without "
            "whitespace (the token is not shown)",
            hint=f"set {token_env} to the token alone, e.g. export {token_env}=\"$(bao print "
                 "token)\" or copy it again without surrounding text",
        )
    return token


def connect(target: VaultTarget, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> hvac.Client:
    """Return an hvac client for ``target`` with the token from its environment variable."""
    return hvac.Client(url=target.address, token=read_token(target.token_env), timeout=timeout)


def _first_error(exc: hvac.exceptions.VaultError) -> str:
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)[:300]
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def vault_errors(address: str, what: str) -> Iterator[None]:
    """Translate hvac/requests failures during ``what`` into rotation errors.

    ``address`` is shown without userinfo or query string (:func:`display_url`).
    """
    unreachable = unreachable_hint(address)  # looked up by the address as resolved
    address = display_url(address)
    try:
        yield
    except requests.exceptions.RequestException as exc:
        raise VaultUnavailable(
            f"cannot reach Vault at {address} while {what} ({type(exc).__name__})",
            hint=unreachable,
        ) from None
    except hvac.exceptions.VaultDown:
        raise VaultUnavailable(
            f"Vault at {address} is sealed while {what}",
            hint="unseal it (`bao operator unseal`; `vault operator unseal` on HashiCorp "
                 "Vault) or fail over; nothing was changed",
        ) from None
    except hvac.exceptions.Forbidden as exc:
        raise CheckFailed(
            f"permission denied while {what}: {_first_error(exc)}",
            # Vault answers 403 for an expired or revoked token too, not only for a policy.
            hint="check the token's policies with `bao token capabilities <path>` (`vault` on "
                 "HashiCorp Vault); if it expired or was revoked (`bao token lookup`), log in "
                 "again",
        ) from None
    except hvac.exceptions.Unauthorized as exc:
        raise CheckFailed(
            f"token rejected while {what}: {_first_error(exc)}",
            hint="the token expired or was revoked: log in again",
        ) from None
    except hvac.exceptions.RateLimitExceeded as exc:
        raise VaultUnavailable(
            f"Vault at {address} is rate-limiting while {what}: {_first_error(exc)}",
            hint="a rate-limit quota applies to this client: wait and retry, or ask the Vault "
                 "operators which quota (sys/quotas/rate-limit) it hit",
        ) from None
    except hvac.exceptions.InvalidRequest as exc:
        message = _first_error(exc)
        if "check-and-set" in message:
            raise CasConflict(f"check-and-set refused while {what}: {message}") from None
        raise CheckFailed(f"Vault refused the request while {what}: {message}") from None
    except (hvac.exceptions.InternalServerError, hvac.exceptions.BadGateway,
            hvac.exceptions.UnexpectedError) as exc:
        message = _first_error(exc)
        if "standby" in message or "sealed" in message:
            raise VaultUnavailable(
                f"Vault at {address} cannot serve while {what}: {message}"
            ) from None
        raise VaultUnavailable(
            f"Vault at {address} failed while {what}: {message}",
            # Vault answers "internal error" to every audited request once no audit
            # device can log: that is the first thing to rule out.
            hint="retry; if every request fails, check the server log for audit device "
                 "errors (Vault refuses all requests once no audit device can log: full "
                 "disk, unwritable audit file); escalate if it persists past 5 minutes",
        ) from None


def health(client: hvac.Client) -> dict[str, Any]:
    """Return ``sys/health`` without raising on sealed/standby status codes."""
    # Every status answers 200 so the body (initialized/sealed/standby) is always read.
    response = client.sys.read_health_status(
        method="GET", standby_ok=True, sealed_code=200, uninit_code=200, standby_code=200,
        performance_standby_code=200, dr_secondary_code=200,
    )
    return json_body(response)


def json_body(answer: Any) -> dict[str, Any]:
    """Return the decoded body of an hvac answer.

    hvac's JSON adapter decodes only a 200 answer with a JSON body and hands back
    the raw ``requests.Response`` for any other status (``sys/health``'s sealed or
    standby codes, say), so every raw ``client.adapter`` call needs this one shape.
    For callers of endpoints that answer with a body: an empty one still raises.
    """
    return dict(answer if isinstance(answer, dict) else answer.json())


def response_data(answer: Any) -> dict[str, Any]:
    """Return an answer's ``data`` (``{}`` when null; the body when a sys endpoint has none)."""
    body = json_body(answer)
    data = body.get("data", body)
    return dict(data) if isinstance(data, dict) else {}
