"""Delivery to workloads: service accounts and Vault Secrets Operator resources.

For each service bound to Kubernetes: its ``ServiceAccount``, a
``VaultConnection`` and ``VaultAuth`` (Kubernetes auth, the service's Vault
role), a ``VaultStaticSecret`` per static secret it consumes (KV v2, HMAC on,
``refreshAfter``, ``rolloutRestartTargets`` naming its workload) and a
``VaultDynamicSecret`` per database role (``renewalPercent``, revoke on
delete) and per database static role it consumes (``allowStaticCreds``). A
rotation is finished when these restart the workloads that read the secret
(or, for ``restarted_by: reload`` services, when ``python -m rotation reload``
has); ``python -m rotation plan`` lists them from the same spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from kernel.naming import kubernetes_role_name
from kernel.paths import project_root
from kernel.spec.model import EnvironmentSpec, KubernetesDelivery, Service, StaticSecret

VSO_API_VERSION = "secrets.hashicorp.com/v1beta1"
# pulumi-kubernetes deletes with foreground propagation by default, which waits for the
# cluster's garbage collector to clear a finalizer. These objects own nothing, so
# background deletion loses nothing and does not hang where no collector runs.
DELETION = {"pulumi.com/deletionPropagationPolicy": "background"}
VAULT_CONNECTION = "vault"


def static_secret_name(secret: StaticSecret) -> str:
    """Return the Kubernetes Secret that holds a static secret (its last path segment)."""
    return secret.path.rsplit("/", 1)[-1]


def dynamic_secret_name(role: str) -> str:
    """Return the Kubernetes Secret that holds a database role's credentials."""
    return f"{role}-db-creds"


def static_role_secret_name(role: str) -> str:
    """Return the Kubernetes Secret a database static role's credentials are synced to."""
    return f"{role}-static-db-creds"


def restart_targets(service: Service) -> list[dict[str, str]]:
    """Return the rollout-restart targets of a service: its workload, unless reload restarts it.

    A ``restarted_by: reload`` workload is restarted once per rotation by ``python -m
    rotation reload``; VSO then only syncs its Secrets (no restart per synced secret).
    """
    assert service.kubernetes is not None
    if service.kubernetes.restarted_by == "reload":
        return []
    return [{"kind": service.kubernetes.workload.kind, "name": service.kubernetes.workload.name}]


def _restarts(service: Service) -> dict[str, list[dict[str, str]]]:
    """``rolloutRestartTargets`` for a VSO secret object, absent when VSO restarts nothing."""
    targets = restart_targets(service)
    return {"rolloutRestartTargets": targets} if targets else {}


def render_directory(delivery: KubernetesDelivery) -> str:
    """Return the render directory, a relative one taken from the Pulumi project root."""
    assert delivery.render_dir is not None
    path = Path(delivery.render_dir)
    return str(path if path.is_absolute() else project_root() / path)


def kubernetes_provider(delivery: KubernetesDelivery) -> k8s.Provider:
    """Return the stack's Kubernetes provider: a cluster context, or a render directory."""
    if delivery.render_dir is not None:
        return k8s.Provider("kubernetes", render_yaml_to_directory=render_directory(delivery))
    return k8s.Provider("kubernetes", context=delivery.context)


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object of the delivery: a ServiceAccount or a VSO custom resource."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any] | None = None  # a VSO resource's spec (None: the ServiceAccount)


def delivery_manifests(spec: EnvironmentSpec) -> dict[str, Manifest]:
    """Return every delivery object of the spec by resource name, without registering any.

    Pure, so a rotation-only program (which registers none of them) exports the
    same ``delivery_resources`` as the whole program.
    """
    delivery = spec.delivery
    assert delivery is not None
    # One pass over the secrets: asking each service for its secrets would be
    # services x secrets (5 million checks for a 1000-service fleet).
    by_consumer: dict[str, list[StaticSecret]] = {}
    for secret in spec.static_secrets:
        for consumer in dict.fromkeys(secret.consumers):
            by_consumer.setdefault(consumer, []).append(secret)
    out: dict[str, Manifest] = {}
    for service in spec.services:
        if service.kubernetes is not None:
            _service(out, spec, service, delivery, by_consumer.get(service.name, []))
    return out


def _service(out: dict[str, Manifest], spec: EnvironmentSpec, service: Service,
             delivery: KubernetesDelivery, consumed: Sequence[StaticSecret]) -> None:
    binding, auth = service.kubernetes, spec.auth.kubernetes
    assert binding is not None and auth is not None
    ns = binding.namespace
    base = f"{service.name}"
    out[f"{base}-sa"] = Manifest("ServiceAccount", ns, binding.service_account)
    out[f"{base}-vault-connection"] = Manifest(
        "VaultConnection", ns, VAULT_CONNECTION,
        {"address": spec.vault.address, "skipTLSVerify": False})
    auth_name = f"{service.name}-vault-auth"
    out[f"{base}-vault-auth"] = Manifest("VaultAuth", ns, auth_name, {
        "vaultConnectionRef": VAULT_CONNECTION,
        "method": "kubernetes",
        "mount": auth.path,
        "kubernetes": {
            "role": kubernetes_role_name(service.name),
            "serviceAccount": binding.service_account,
            "audiences": [auth.audience] if auth.audience else ["vault"],
        },
    })
    for secret in consumed:
        out[f"{base}-static-{static_secret_name(secret)}"] = Manifest(
            "VaultStaticSecret", ns, static_secret_name(secret), {
                "vaultAuthRef": auth_name,
                "mount": secret.mount,
                "type": "kv-v2",
                "path": secret.path,
                "refreshAfter": f"{delivery.refresh_after_seconds}s",
                "hmacSecretData": True,
                "destination": {"name": static_secret_name(secret), "create": True},
                **_restarts(service),
            })
    database = spec.database
    for role in service.database_roles:
        assert database is not None
        out[f"{base}-dynamic-{role}"] = Manifest(
            "VaultDynamicSecret", ns, dynamic_secret_name(role), {
                "vaultAuthRef": auth_name,
                "mount": database.mount,
                "path": f"creds/{role}",
                "renewalPercent": delivery.renewal_percent,
                "revoke": True,
                "destination": {"name": dynamic_secret_name(role), "create": True},
                **_restarts(service),
            })
    for static in database.static_roles if database is not None else ():
        if service.name not in static.consumers:
            continue
        assert database is not None
        # A static role's password is rotated by Vault (and by reviewed bumps): VSO
        # re-reads static-creds when the rotation TTL runs out and restarts the workload.
        out[f"{base}-static-role-{static.name}"] = Manifest(
            "VaultDynamicSecret", ns, static_role_secret_name(static.name), {
                "vaultAuthRef": auth_name,
                "mount": database.mount,
                "path": f"static-creds/{static.name}",
                "allowStaticCreds": True,
                "destination": {"name": static_role_secret_name(static.name),
                                "create": True},
                **_restarts(service),
            })


class SecretDelivery(pulumi.ComponentResource):
    """Declares every Kubernetes service's account and Vault Secrets Operator resources."""

    resources: dict[str, k8s.core.v1.ServiceAccount | k8s.apiextensions.CustomResource]

    def __init__(
        self, name: str, spec: EnvironmentSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tradepulse:vault:SecretDelivery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.resources = {}
        for key, m in delivery_manifests(spec).items():
            if m.body is None:
                self.resources[key] = k8s.core.v1.ServiceAccount(
                    key,
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=m.name, namespace=m.namespace,
                                                        annotations=DELETION),
                    opts=child,
                )
                continue
            self.resources[key] = k8s.apiextensions.CustomResource(
                key,
                api_version=VSO_API_VERSION,
                kind=m.kind,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=m.name, namespace=m.namespace, annotations=DELETION,
                    labels={"app.kubernetes.io/managed-by": "tradepulse-vault"}),
                spec=m.body,
                opts=child,
            )
        self.manifests = sorted(self.resources)
        self.register_outputs({"resources": self.manifests})
