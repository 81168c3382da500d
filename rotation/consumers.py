"""Consumers log in for real: each service's own TokenRequest token, its own Vault role.

The post-rotation check of ``verify --consumers``: for each service bound to Kubernetes,
a token from the TokenRequest API for its ServiceAccount and the auth method's audience
logs in to Vault as the service's role (Vault asks the API server's TokenReview, as it
will for the pod). With that login the service must

* read each static secret it consumes, at the declared version;
* be refused every secret in scope that it does not consume;
* get database credentials for its own roles, and be refused the other roles;

and the same token must be refused by another service's role. Nothing read is kept:
only versions, role names and whether Vault answered or refused. The service token is
revoked at the end, which revokes the database leases it was issued with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import hvac
import hvac.exceptions

from kernel.naming import kubernetes_role_name
from kernel.spec.model import EnvironmentSpec, Service, StaticSecret
from rotation.kube import Cluster
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, vault_errors

DEFAULT_AUDIENCE = "vault"  # what the delivery's VaultAuth asks for when the spec sets none
REFUSED = (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest,
           hvac.exceptions.Unauthorized)


@dataclass
class ConsumerCheck:
    """What one service could and could not do through its own login."""

    service: str
    namespace: str
    service_account: str
    role: str
    logged_in: bool = False
    policies: list[str] = field(default_factory=list)
    secrets: dict[str, int | None] = field(default_factory=dict)
    database_roles: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def audience_of(spec: EnvironmentSpec) -> str:
    """Return the audience a service's token is requested for (the role's bound audience)."""
    auth = spec.auth.kubernetes
    return auth.audience if auth is not None and auth.audience else DEFAULT_AUDIENCE


def login(address: str, mount: str, role: str, jwt: str) -> tuple[hvac.Client | None, str]:
    """Log in with a service account JWT; return (client, "") or (None, Vault's refusal)."""
    client = hvac.Client(url=address, timeout=DEFAULT_TIMEOUT_SECONDS)
    with vault_errors(address, f"logging in as {role}"):
        try:
            client.auth.kubernetes.login(role, jwt, mount_point=mount)
        except REFUSED as exc:
            return None, (getattr(exc, "errors", None) or [type(exc).__name__])[0]
    return client, ""


def _refused(address: str, what: str, call: Callable[[], Any]) -> bool:
    """Run ``call``; True when Vault refused it (403/400/401), False when it answered."""
    with vault_errors(address, what):
        try:
            call()
        except REFUSED:
            return True
    return False


def _check_secrets(client: hvac.Client, address: str, result: ConsumerCheck, *,
                   own: Sequence[StaticSecret], foreign: Sequence[StaticSecret],
                   declared: Mapping[str, int]) -> None:
    """Own secrets readable at the declared version; every foreign one refused."""
    role = result.role
    for secret in own:
        with vault_errors(address, f"reading {secret.id} as {role}"):
            try:
                answer = client.secrets.kv.v2.read_secret_version(
                    path=secret.path, mount_point=secret.mount, raise_on_deleted_version=True)
            except REFUSED:
                result.failures.append(f"{result.service}: refused its own secret {secret.id}")
                continue
        version = int(answer["data"]["metadata"]["version"])
        del answer  # the values are not looked at, only the version
        result.secrets[secret.id] = version
        if version != declared.get(secret.id):
            result.failures.append(f"{result.service}: read {secret.id} at version {version}, "
                                   f"declared {declared.get(secret.id)}")
    for secret in foreign:
        def read(s: StaticSecret = secret) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path=s.path, mount_point=s.mount, raise_on_deleted_version=True)
        if _refused(address, f"reading {secret.id} as {role}", read):
            result.refused.append(f"secret {secret.id}")
        else:
            result.failures.append(f"{result.service}: could read {secret.id}, which it "
                                   "does not consume")


def _check_database(client: hvac.Client, address: str, result: ConsumerCheck,
                    spec: EnvironmentSpec, own_roles: Sequence[str]) -> None:
    """Credentials for the service's own database roles; every other role refused."""
    database = spec.database
    if database is None:
        return
    for db_role in (r.name for r in database.roles):
        def issue(r: str = db_role, mount: str = database.mount) -> Any:
            return client.secrets.database.generate_credentials(name=r, mount_point=mount)
        refused = _refused(address, f"issuing {db_role} credentials as {result.role}", issue)
        if db_role in own_roles and refused:
            result.failures.append(f"{result.service}: refused credentials of its own "
                                   f"database role {db_role}")
        elif db_role in own_roles:
            result.database_roles.append(db_role)
        elif refused:
            result.refused.append(f"database role {db_role}")
        else:
            result.failures.append(f"{result.service}: got credentials of {db_role}, "
                                   "not its database role")


def check_service(
    cluster: Cluster, address: str, spec: EnvironmentSpec, service: Service, *,
    declared: Mapping[str, int], scope: Sequence[StaticSecret], other_role: str | None,
) -> ConsumerCheck:
    """Log ``service`` in with its own token and check what it can reach."""
    auth = spec.auth.kubernetes
    binding = service.kubernetes
    assert auth is not None and binding is not None
    role = kubernetes_role_name(service.name)
    result = ConsumerCheck(service.name, binding.namespace, binding.service_account, role)
    jwt = cluster.request_token(binding.namespace, binding.service_account, audience_of(spec))
    client, refusal = login(address, auth.path, role, jwt)
    if client is None:
        result.failures.append(f"{service.name}: login as {role} refused: {refusal}")
        return result
    result.logged_in = True
    try:
        with vault_errors(address, f"looking up the token of {role}"):
            looked = client.auth.token.lookup_self()["data"]
        result.policies = sorted(looked.get("policies") or [])
        own = [s for s in spec.static_secrets if service.name in s.consumers]
        foreign = [s for s in scope if service.name not in s.consumers]
        _check_secrets(client, address, result, own=own, foreign=foreign, declared=declared)
        _check_database(client, address, result, spec, service.database_roles)
    finally:
        # Revoking the token revokes the leases issued with it: nothing is left behind.
        with vault_errors(address, f"revoking the token of {role}"):
            client.auth.token.revoke_self()
    if other_role is not None:
        other, _ = login(address, auth.path, other_role, jwt)
        if other is None:
            result.refused.append(f"login as {other_role}")
        else:
            with vault_errors(address, f"revoking a token of {other_role}"):
                other.auth.token.revoke_self()
            result.failures.append(f"{service.name}: its token logged in as {other_role}")
    return result


def check_consumers(
    cluster: Cluster, address: str, spec: EnvironmentSpec, services: Sequence[Service], *,
    declared: Mapping[str, int], scope: Sequence[StaticSecret],
) -> list[ConsumerCheck]:
    """Check each of ``services`` (bound to Kubernetes) through its own login."""
    bound = [s for s in spec.services if s.kubernetes is not None]
    checks = []
    for service in services:
        if service.kubernetes is None:
            continue
        # Another service's role: the next bound service (wrapping), when there is one.
        others = [s for s in bound if s.name != service.name]
        other_role = None
        if others:
            later = [s for s in others if bound.index(s) > bound.index(service)]
            other_role = kubernetes_role_name((later or others)[0].name)
        checks.append(check_service(cluster, address, spec, service, declared=declared,
                                    scope=scope, other_role=other_role))
    return checks
