"""Typed environment spec: what one Vault environment must look like.

These frozen dataclasses are built once, by :mod:`kernel.spec.loader`, from the
``tradepulse-vault:spec`` key of ``Pulumi.<stack>.yaml`` after JSON Schema and
cross-reference validation. Components receive them and never look at raw
config, so a typo fails at load time with the file and key path, not halfway
through ``pulumi up``. All durations are whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Flavour = Literal["vault", "openbao"]


@dataclass(frozen=True)
class VaultTarget:
    """How the program reaches Vault; the token always comes from ``VAULT_TOKEN``."""

    address: str
    flavour: Flavour
    namespace: str | None
    provider_token_ttl_seconds: int


@dataclass(frozen=True)
class Limits:
    """Caps that every TTL in the spec (and the preview policy pack) respects."""

    max_database_ttl_seconds: int
    max_token_ttl_seconds: int


@dataclass(frozen=True)
class KvMount:
    """A KV version 2 secrets engine mount."""

    path: str
    description: str
    cas_required: bool
    max_versions: int
    delete_version_after_seconds: int


@dataclass(frozen=True)
class DatabaseConnection:
    """The PostgreSQL connection; the three ``*_secret`` fields name Pulumi config secrets."""

    name: str
    url_secret: str
    username_secret: str
    password_secret: str
    verify_connection: bool
    max_open_connections: int
    # 1: Vault connects with the seeded config secret; each bump is one rotate-root.
    root_rotation: int = 1


@dataclass(frozen=True)
class DatabaseRole:
    """A dynamic-credential role of the database secrets engine."""

    name: str
    creation_statements: tuple[str, ...]
    revocation_statements: tuple[str, ...]
    default_ttl_seconds: int
    max_ttl_seconds: int
    # Each bump revokes every lease issued under the role (consumers take new ones).
    lease_generation: int = 1


@dataclass(frozen=True)
class DatabaseStaticRole:
    """A static role: Vault owns the password of one existing database user.

    For services that cannot take dynamic credentials (a fixed user name).
    Vault rotates it on ``rotation_period_seconds`` or ``rotation_schedule``;
    ``version`` is the reviewed rotation on top: each bump is one rotate-role.
    """

    name: str
    username: str
    rotation_period_seconds: int | None
    rotation_schedule: str | None
    rotation_window_seconds: int | None
    rotation_statements: tuple[str, ...]
    version: int
    consumers: tuple[str, ...]
    paired_with: tuple[str, ...]


@dataclass(frozen=True)
class DatabaseEngine:
    """The database secrets engine: mount, connection, dynamic and static roles."""

    mount: str
    connection: DatabaseConnection
    roles: tuple[DatabaseRole, ...]
    static_roles: tuple[DatabaseStaticRole, ...] = ()


@dataclass(frozen=True)
class JwtIssuerKey:
    """An identity OIDC key Vault rotates on ``rotation_period_seconds``, and on each bump."""

    name: str
    algorithm: str
    rotation_period_seconds: int
    verification_ttl_seconds: int
    allowed_client_ids: tuple[str, ...]
    version: int = 1


@dataclass(frozen=True)
class Workload:
    """The Deployment/StatefulSet/DaemonSet that restarts when its secrets change."""

    kind: str
    name: str


@dataclass(frozen=True)
class KubernetesBinding:
    """The service account a service runs as, and the workload that uses it."""

    namespace: str
    service_account: str
    workload: Workload
    # "vso": VSO's rolloutRestartTargets restart the workload (once per synced secret);
    # "reload": `python -m rotation reload` restarts it once per rotation, in plan order.
    restarted_by: str = "vso"


@dataclass(frozen=True)
class OutsideCluster:
    """A service outside Kubernetes: credentials via ``secrets-issue-dynamic`` on its host."""

    host: str
    output: str | None


@dataclass(frozen=True)
class Service:
    """A workload that authenticates to Vault with its own policy set."""

    name: str
    policies: tuple[str, ...]
    kubernetes: KubernetesBinding | None
    outside_cluster: OutsideCluster | None
    database_roles: tuple[str, ...]
    token_ttl_seconds: int
    token_max_ttl_seconds: int


@dataclass(frozen=True)
class KubernetesAuth:
    """The Kubernetes auth method (one role per service with a binding)."""

    path: str
    host: str
    audience: str | None
    ca_cert: str | None
    # Pulumi config secret holding the token reviewer's JWT (a ServiceAccount bound to
    # system:auth-delegator); None: Vault uses each login's own JWT to call TokenReview.
    token_reviewer_jwt_secret: str | None = None


@dataclass(frozen=True)
class JwtRole:
    """A CI pipeline role bound to repository, branch and deployment environment."""

    name: str
    policies: tuple[str, ...]
    bound_audiences: tuple[str, ...]
    repository: str
    branch: str | None  # refs/heads/<branch>; None for a pull-request role
    pull_requests: bool  # ref must match refs/pull/*/merge
    deployment_environment: str
    user_claim: str
    token_ttl_seconds: int
    token_max_ttl_seconds: int


@dataclass(frozen=True)
class JwtAuth:
    """The JWT auth method for CI pipelines; exactly one key source is set."""

    path: str
    bound_issuer: str
    oidc_discovery_url: str | None
    jwks_url: str | None
    validation_pubkeys: tuple[str, ...]
    roles: tuple[JwtRole, ...]


@dataclass(frozen=True)
class AuthMethods:
    """Auth methods this environment enables."""

    kubernetes: KubernetesAuth | None
    jwt: JwtAuth | None


@dataclass(frozen=True)
class AuditDevice:
    """An audit device; ``options`` are passed to Vault (or rendered for OpenBao)."""

    path: str
    type: str
    description: str
    options: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class AuditRequestHeader:
    """A request header that audit devices record."""

    name: str
    hmac: bool


@dataclass(frozen=True)
class Audit:
    """Audit devices and the request headers they record."""

    devices: tuple[AuditDevice, ...]
    request_headers: tuple[AuditRequestHeader, ...]


SecretSource = Literal["generated", "provided", "mirror"]


@dataclass(frozen=True)
class Generator:
    """How a ``generated`` secret's values are drawn (cryptographically random)."""

    length: int
    alphabet: str


PREVIOUS_SUFFIX = "_PREVIOUS"  # the documented key of a kept previous value: <KEY>_PREVIOUS


@dataclass(frozen=True)
class StaticSecret:
    """A KV v2 secret this repository owns; ``version`` is what it must be at after apply."""

    mount: str
    path: str
    keys: tuple[str, ...]
    version: int | None
    source: SecretSource
    generator: Generator | None
    config_secret: str | None
    rotation_interval_seconds: int | None
    consumers: tuple[str, ...]
    mirror_to_dr: bool
    mirror_of: str | None
    # A rollback: this version carries the data of the earlier version ``restores``,
    # which the program reads from Vault's KV history at apply time (never from git).
    restores: int | None = None
    keep_previous: bool = False  # a rotation keeps the old value as <KEY>_PREVIOUS
    previous: int | None = None  # the version whose keys are kept as <KEY>_PREVIOUS
    retired: int | None = None  # retire: this version holds version ``retired``'s keys only

    @property
    def from_history(self) -> int | None:
        """The earlier version whose keys this version's data is (rollback or retire)."""
        return self.restores if self.restores is not None else self.retired

    @property
    def id(self) -> str:
        """The identifier the CLI and records use: ``<mount>/<path>``."""
        return f"{self.mount}/{self.path}"

    @property
    def data_path(self) -> str:
        """The API path of the secret's data (what ACL policies name)."""
        return f"{self.mount}/data/{self.path}"

    @property
    def cas(self) -> int | None:
        """The check-and-set value the write carries: the version before this one."""
        return None if self.version is None else self.version - 1


@dataclass(frozen=True)
class KubernetesDelivery:
    """Where Vault Secrets Operator resources go: a cluster context or a render directory."""

    context: str | None
    render_dir: str | None
    refresh_after_seconds: int
    renewal_percent: int


@dataclass(frozen=True)
class EnvironmentSpec:
    """Everything one environment's Vault must contain."""

    environment: str
    source: str
    strict: bool  # held to the production rules (declared, never inferred from the name)
    vault: VaultTarget
    limits: Limits
    kv_mounts: tuple[KvMount, ...]
    database: DatabaseEngine | None
    jwt_issuer_keys: tuple[JwtIssuerKey, ...]
    policies: tuple[str, ...]
    services: tuple[Service, ...]
    auth: AuthMethods
    audit: Audit
    static_secrets: tuple[StaticSecret, ...]
    delivery: KubernetesDelivery | None

    def secret(self, secret_id: str) -> StaticSecret | None:
        """Return the static secret ``<mount>/<path>``, or None."""
        return next((s for s in self.static_secrets if s.id == secret_id), None)
