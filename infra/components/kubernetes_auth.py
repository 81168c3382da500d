"""Kubernetes auth: one role per service, bound to its service account and namespace.

Vault runs outside the clusters, so the method is configured with the cluster's API
address, its CA and, when the spec names one, a token reviewer's JWT (a ServiceAccount
bound to ``system:auth-delegator``, read from a Pulumi config secret): Vault calls the
TokenReview API with it to check each service's login token. The reviewer account is the
cluster's (its administrators own RBAC); this program only holds its token.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_vault as vault

from kernel.naming import kubernetes_role_name, resource_name
from kernel.spec.model import KubernetesAuth as KubernetesAuthSpec
from kernel.spec.model import Service


class KubernetesAuth(pulumi.ComponentResource):
    """Enables the Kubernetes auth method and declares a role per bound service."""

    roles: dict[str, vault.kubernetes.AuthBackendRole]

    def __init__(
        self,
        name: str,
        spec: KubernetesAuthSpec,
        services: Sequence[Service],
        token_reviewer_jwt: pulumi.Output[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tradepulse:vault:KubernetesAuth", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.backend = vault.AuthBackend(
            resource_name("auth", spec.path),
            path=spec.path,
            type="kubernetes",
            description="Kubernetes service accounts of TradePulse workloads",
            opts=child,
        )
        self.config = vault.kubernetes.AuthBackendConfig(
            resource_name("auth-config", spec.path),
            backend=self.backend.path,
            kubernetes_host=spec.host,
            # Outside the cluster Vault has no pod service-account files to read:
            # the CA comes from the spec and the reviewer JWT from the client.
            kubernetes_ca_cert=spec.ca_cert,
            disable_local_ca_jwt=spec.ca_cert is not None or None,
            token_reviewer_jwt=token_reviewer_jwt,
            opts=child,
        )
        self.roles = {}
        for svc in services:
            if svc.kubernetes is None:
                continue
            role = kubernetes_role_name(svc.name)
            self.roles[svc.name] = vault.kubernetes.AuthBackendRole(
                resource_name("k8s-role", role),
                backend=self.backend.path,
                role_name=role,
                bound_service_account_names=[svc.kubernetes.service_account],
                bound_service_account_namespaces=[svc.kubernetes.namespace],
                audience=spec.audience,
                token_policies=list(svc.policies),
                token_ttl=svc.token_ttl_seconds,
                token_max_ttl=svc.token_max_ttl_seconds,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config]),
            )
        self.role_names = pulumi.Output.all(*(r.role_name for r in self.roles.values()))
        self.register_outputs({"path": self.backend.path, "roles": self.role_names})
