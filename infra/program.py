"""Build every component of one environment from its spec.

Kept apart from ``__main__.py`` so unit tests can run the same code under
Pulumi's mocks and inspect the resources it registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from infra.audit_config import render_audit_hcl
from infra.components import (
    AclPolicies,
    AuditDevices,
    DatabaseEngine,
    DatabaseSecrets,
    JwtAuth,
    JwtIssuerKeys,
    KubernetesAuth,
    KvEngines,
    vault_provider,
)
from infra.components.secret_delivery import (
    SecretDelivery,
    delivery_manifests,
    kubernetes_provider,
)
from infra.components.static_secrets import StaticSecrets
from kernel import paths
from kernel.naming import kubernetes_role_name
from kernel.policy_files import read_policies
from kernel.spec.credentials import credentials
from kernel.spec.model import EnvironmentSpec

MIRROR_SOURCE_STACK = "prod"


@dataclass
class Deployment:
    """The components of one environment, for exports and tests."""

    kv: KvEngines
    policies: AclPolicies
    audit: AuditDevices
    database: DatabaseEngine | None
    issuer_keys: JwtIssuerKeys
    kubernetes_auth: KubernetesAuth | None
    jwt_auth: JwtAuth | None
    static_secrets: StaticSecrets
    delivery: SecretDelivery | None


def database_secrets(spec: EnvironmentSpec, config: pulumi.Config) -> DatabaseSecrets | None:
    """Read the database connection secrets the spec names from Pulumi config."""
    if spec.database is None:
        return None
    conn = spec.database.connection
    return DatabaseSecrets(
        connection_url=config.require_secret(conn.url_secret),
        username=config.require_secret(conn.username_secret),
        password=config.require_secret(conn.password_secret),
    )


def provided_secrets(spec: EnvironmentSpec, config: pulumi.Config) -> dict[str, pulumi.Output[str]]:
    """Read every ``provided`` static secret's config secret (a JSON object of keys)."""
    names = sorted({s.config_secret for s in spec.static_secrets if s.config_secret})
    return {name: config.require_secret(name) for name in names}


def kubernetes_reviewer_jwt(spec: EnvironmentSpec,
                            config: pulumi.Config) -> pulumi.Output[str] | None:
    """Read the Kubernetes token reviewer's JWT from the config secret the spec names."""
    k8s = spec.auth.kubernetes
    if k8s is None or k8s.token_reviewer_jwt_secret is None:
        return None
    return config.require_secret(k8s.token_reviewer_jwt_secret)


def mirror_source(spec: EnvironmentSpec) -> pulumi.Output[Any] | None:
    """Return prod's ``dr_mirror`` output when this stack holds mirrors of prod secrets."""
    if not any(s.mirror_of for s in spec.static_secrets):
        return None
    ref = pulumi.StackReference(
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{MIRROR_SOURCE_STACK}"
    )
    return ref.get_output("dr_mirror")


def build(
    spec: EnvironmentSpec,
    db_secrets: DatabaseSecrets | None,
    provided: Mapping[str, pulumi.Output[str]] | None = None,
    mirrors: pulumi.Output[Any] | None = None,
    *,
    policy_dir: Path = paths.POLICY_DIR,
    kubernetes_reviewer_jwt: pulumi.Output[str] | None = None,
) -> Deployment:
    """Register every Vault resource the spec declares, under one explicit provider.

    ``policy_dir`` holds the ACL policy files (the repository's by default; the
    benchmarks point it at a generated fleet's).
    """
    provider = vault_provider(spec.vault)
    opts = pulumi.ResourceOptions(providers=[provider])
    policy_texts = read_policies(spec.policies, policy_dir)
    rotations = {c.id: c for c in credentials(spec) if c.kind != "kv"}

    policies = AclPolicies("acl-policies", policy_texts, opts=opts)
    # Roles reference policies by name; ordering them after the policies keeps
    # a fresh apply and a destroy free of dangling references.
    after_policies = pulumi.ResourceOptions(providers=[provider], depends_on=[policies])

    database = None
    if spec.database is not None:
        if db_secrets is None:
            raise ValueError(f"{spec.source}: database declared but no connection secrets given")
        database = DatabaseEngine("database", spec.database, db_secrets, rotations, opts=opts)

    k8s = spec.auth.kubernetes
    jwt = spec.auth.jwt
    kv = KvEngines("kv", spec.kv_mounts, opts=opts)
    return Deployment(
        kv=kv,
        policies=policies,
        audit=AuditDevices("audit", spec.audit, spec.vault.flavour, spec.source, opts=opts),
        database=database,
        issuer_keys=JwtIssuerKeys("jwt-issuer-keys", spec.jwt_issuer_keys, rotations,
                                  opts=opts),
        kubernetes_auth=None if k8s is None else KubernetesAuth(
            "kubernetes-auth", k8s, spec.services, kubernetes_reviewer_jwt, opts=after_policies
        ),
        jwt_auth=None if jwt is None else JwtAuth("jwt-auth", jwt, opts=after_policies),
        static_secrets=StaticSecrets(
            "static-secrets", spec.static_secrets, provided=provided or {}, source=spec.source,
            mirrors=mirrors, opts=pulumi.ResourceOptions(providers=[provider], depends_on=[kv]),
        ),
        delivery=None if spec.delivery is None else SecretDelivery(
            "delivery", spec,
            opts=pulumi.ResourceOptions(providers=[kubernetes_provider(spec.delivery)]),
        ),
    )


def build_rotation_only(
    spec: EnvironmentSpec,
    secret_ids: list[str],
    provided: Mapping[str, pulumi.Output[str]] | None = None,
    mirrors: pulumi.Output[Any] | None = None,
) -> StaticSecrets:
    """Register only the static secrets ``secret_ids`` (a rotation-only targeted apply).

    What :func:`kernel.targets.rotation_only_secrets` chose for the URNs of a
    ``pulumi up --target``: the engine keeps every resource this does not
    register. The provider and the component are registered under the names
    :func:`build` gives them, so the URNs are the same.
    """
    provider = vault_provider(spec.vault)
    return StaticSecrets(
        "static-secrets", spec.static_secrets, provided=provided or {}, source=spec.source,
        mirrors=mirrors, only=set(secret_ids),
        opts=pulumi.ResourceOptions(providers=[provider]),
    )


def export(spec: EnvironmentSpec, static: StaticSecrets,
           audit_paths: pulumi.Input[list[str]] | None = None) -> None:
    """Export identifiers only: mount paths, role names, policy names, audit paths.

    Every name is read from the spec (the resources are registered with these
    very names), so a rotation-only program, which registers almost nothing,
    exports what the whole program exports. ``audit_paths`` is the whole
    program's audit device list (on OpenBao it is what the server has, checked
    against the spec); None: the declared list.
    """
    pulumi.export("environment", spec.environment)
    pulumi.export("vault_address", spec.vault.address)
    pulumi.export("flavour", spec.vault.flavour)
    pulumi.export("kv_mounts", [m.path for m in spec.kv_mounts])
    pulumi.export("policies", list(spec.policies))
    pulumi.export("audit_devices", [d.path for d in spec.audit.devices]
                  if audit_paths is None else audit_paths)
    pulumi.export("audit_server_config_hcl", render_audit_hcl(spec.audit.devices))
    pulumi.export("jwt_issuer_keys", [k.name for k in spec.jwt_issuer_keys])
    pulumi.export("credential_versions", {c.id: c.version for c in credentials(spec)
                                          if c.kind != "kv"})
    if spec.database is not None:
        pulumi.export("database_mount", spec.database.mount)
        pulumi.export("database_roles", [r.name for r in spec.database.roles])
        pulumi.export("database_static_roles", [r.name for r in spec.database.static_roles])
    if (k8s := spec.auth.kubernetes) is not None:
        pulumi.export("kubernetes_auth_path", k8s.path)
        pulumi.export("kubernetes_roles", [kubernetes_role_name(s.name) for s in spec.services
                                           if s.kubernetes is not None])
    if (jwt := spec.auth.jwt) is not None:
        pulumi.export("jwt_auth_path", jwt.path)
        pulumi.export("jwt_roles", [r.name for r in jwt.roles])
    pulumi.export("static_secret_versions", static.versions)
    if spec.delivery is not None:
        pulumi.export("delivery_resources", sorted(delivery_manifests(spec)))
    if any(s.mirror_to_dr for s in spec.static_secrets):
        # Secret output: the dr stack reads it through a StackReference.
        pulumi.export("dr_mirror", static.dr_mirror)
