"""The environment spec, declared once: what one Vault environment must look like.

These frozen pydantic models are the single declaration of the
``tradepulse-vault:spec`` key of ``Pulumi.<stack>.yaml``: validation (types,
ranges, patterns, unknown keys, which keys go together), defaults, the typed
objects components receive, and - generated from them by
:mod:`kernel.spec.schema` - the JSON Schema editors use. Components never look
at raw config, so a typo fails at load time with the file and key path, not
halfway through ``pulumi up``. All durations are whole seconds.

Scalars are strict (a quoted ``"3"`` is not a version, ``1`` is not ``true``);
lists become tuples. The rules that need more than one key
(``restores`` below ``version``, policies that exist, consumers that can read)
are :mod:`kernel.spec.references`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kernel.vault_address import address_problem

Flavour = Literal["vault", "openbao"]
SecretSource = Literal["generated", "provided", "mirror"]
PREVIOUS_SUFFIX = "_PREVIOUS"  # the documented key of a kept previous value: <KEY>_PREVIOUS
# 20 minutes is pulumi-vault's own default for the provider's child token.
DEFAULT_PROVIDER_TOKEN_TTL_SECONDS = 20 * 60

T = TypeVar("T")


def _unique(items: tuple[T, ...]) -> tuple[T, ...]:
    if len(set(items)) != len(items):
        raise PydanticCustomError("unique_items", "has repeated items")
    return items


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
NonEmpty = Annotated[str, Strict(), Field(min_length=1)]
Name = Annotated[str, Strict(), Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
MountPath = Annotated[str, Strict(), Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
K8sName = Annotated[str, Strict(), Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
ConfigKey = Annotated[str, Strict(), Field(pattern=r"^[a-zA-Z][a-zA-Z0-9]*$")]
Url = Annotated[str, Strict(), Field(pattern=r"^https?://")]
Ttl = Annotated[int, Strict(), Field(ge=60, le=2_592_000)]
Version = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]
Period = Annotated[int, Strict(), Field(ge=3600, le=31_536_000)]
UniqueItems = Field(json_schema_extra={"uniqueItems": True})
Names = Annotated[tuple[Name, ...], AfterValidator(_unique), UniqueItems]
PolicyList = Annotated[tuple[Name, ...], Field(min_length=1), AfterValidator(_unique),
                       UniqueItems]
Statements = Annotated[tuple[Str, ...], Field(min_length=1)]


class Spec(BaseModel):
    """Every spec object: immutable, and an unknown key is an error, not ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_by_name=True,
                              validate_by_alias=True)


def alternatives(message: str) -> PydanticCustomError:
    """Say that an object takes none of its allowed shapes (``message`` names them)."""
    return PydanticCustomError("alternatives", message)


def exactly_one_of(spec: BaseModel, *names: str) -> None:
    """Raise unless exactly one of ``names`` is given: set in the file and not null.

    An explicit null is an absent key, as everywhere in the spec.
    """
    given = [n for n in names if n in spec.model_fields_set and getattr(spec, n) is not None]
    if len(given) != 1:
        raise alternatives(f"set exactly one of {', '.join(names)}")


def refuse_together(present: Sequence[str], trigger: str, reason: str) -> None:
    """Raise when keys that cannot go with ``trigger`` are declared beside it.

    The error names the object; :mod:`kernel.spec.messages` reports one
    problem per key in ``present`` (the error's ``keys``).
    """
    if present:
        raise PydanticCustomError("not_together", "not allowed together with {trigger}: "
                                  "{reason}", {"keys": list(present), "trigger": trigger,
                                               "reason": reason})


class VaultTarget(Spec):
    """How the program reaches Vault; the token always comes from ``VAULT_TOKEN``."""

    address: Annotated[str, Strict(), Field(pattern=r"^https?://[^\s/]+(:[0-9]{1,5})?/?$")]
    flavour: Flavour = Field(description="`vault` creates audit devices through the API; "
                             "`openbao` renders them as server config and leaves the API alone.")
    namespace: Str | None = Field(
        None, description="Vault Enterprise namespace; empty or absent for none.")
    provider_token_ttl_seconds: Annotated[int, Strict(), Field(ge=300, le=86400)] = Field(
        DEFAULT_PROVIDER_TOKEN_TTL_SECONDS,
        description="Lifetime of the provider's child token (pulumi-vault "
                    "max_lease_ttl_seconds). Long applies need more than the 20-minute default.")

    @field_validator("address")
    @classmethod
    def _usable(cls, address: str) -> str:
        problem = address_problem(address)
        if problem is not None:  # the pattern's shape lets an unusable host or port through
            raise PydanticCustomError("vault_address", problem)
        return address.rstrip("/")

    @field_validator("namespace")
    @classmethod
    def _empty_is_none(cls, namespace: str | None) -> str | None:
        return namespace or None


class Limits(Spec):
    """Caps every TTL in this spec must respect; the policy pack enforces the same caps."""

    max_database_ttl_seconds: Ttl
    max_token_ttl_seconds: Ttl


class KvMount(Spec):
    """A KV version 2 secrets engine mount."""

    path: MountPath
    description: Str = ""
    cas_required: Bool
    max_versions: Annotated[int, Strict(), Field(ge=1, le=1000)]
    delete_version_after_seconds: Annotated[int, Strict(), Field(ge=0, le=31_536_000)] = Field(
        0, description="0 keeps versions until max_versions pushes them out.")


class DatabaseConnection(Spec):
    """The PostgreSQL connection; the three ``*_secret`` fields name Pulumi config secrets."""

    name: Name
    url_secret: ConfigKey = Field(
        description="Config key of a secret holding the connection URL template, e.g. "
                    "postgresql://{{username}}:{{password}}@db:5432/tradepulse")
    username_secret: ConfigKey
    password_secret: ConfigKey
    verify_connection: Bool = True
    max_open_connections: Annotated[int, Strict(), Field(ge=1, le=1000)] = 4
    root_rotation: Version = Field(
        1, description="Declared rotation of the root credential Vault connects with. 1: the "
        "seeded config secret; raising it by one (python -m rotation bump) calls "
        "<mount>/rotate-root/<connection> at apply.")


class DatabaseRole(Spec):
    """A dynamic-credential role of the database secrets engine."""

    name: Name
    creation_statements: Statements
    revocation_statements: Statements
    default_ttl_seconds: Ttl
    max_ttl_seconds: Ttl
    lease_generation: Version = Field(
        1, description="Generation of the role's dynamic leases; raising it by one revokes "
        "every lease issued under the role (sys/leases/revoke-prefix/<mount>/creds/<role>) at "
        "apply.")


class DatabaseStaticRole(Spec):
    """A static role: Vault owns the password of one existing database user.

    For services that cannot take dynamic credentials (a fixed user name).
    Vault rotates it on ``rotation_period_seconds`` or ``rotation_schedule``;
    ``version`` is the reviewed rotation on top: each bump is one rotate-role.
    """

    name: Name
    username: Annotated[str, Strict(), Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = Field(
        description="the existing database user whose password Vault rotates")
    rotation_period_seconds: Period | None = Field(
        None, description="Vault also rotates on this period")
    rotation_schedule: Annotated[str, Strict(), Field(min_length=9, max_length=100)] | None = (
        Field(None, description="cron schedule instead of a period, e.g. '0 3 * * SAT'"))
    rotation_window_seconds: Annotated[int, Strict(), Field(ge=3600, le=86400)] | None = None
    rotation_statements: Statements
    version: Version = Field(description="Declared rotation; raising it by one calls "
                             "<mount>/rotate-role/<name> at apply.")
    consumers: Names
    paired_with: Names = Field((), description="static roles that belong together: due "
                               "staggers them")

    @model_validator(mode="after")
    def _period_or_schedule(self) -> DatabaseStaticRole:
        exactly_one_of(self, "rotation_period_seconds", "rotation_schedule")
        return self


class DatabaseEngine(Spec):
    """The database secrets engine. The URL and root credentials are config secrets named here."""

    mount: MountPath
    connection: DatabaseConnection
    roles: Annotated[tuple[DatabaseRole, ...], Field(min_length=1)]
    static_roles: tuple[DatabaseStaticRole, ...] = Field(
        (), description="Database static roles: Vault owns the password of an existing database "
        "user (for services that cannot take dynamic credentials); consumers read "
        "<mount>/static-creds/<name>.")


class JwtIssuerKey(Spec):
    """An identity OIDC key Vault rotates on ``rotation_period_seconds``, and on each bump."""

    name: Name
    algorithm: Literal["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"] = "RS256"
    rotation_period_seconds: Period
    verification_ttl_seconds: Period
    allowed_client_ids: Annotated[tuple[NonEmpty, ...], AfterValidator(_unique),
                                  UniqueItems] = ()
    version: Version = Field(
        1, description="Declared rotation of the key; raising it by one calls "
        "identity/oidc/key/<name>/rotate at apply (the previous public key stays published "
        "for verification_ttl_seconds).")


class Workload(Spec):
    """The Deployment/StatefulSet/DaemonSet that restarts when its secrets change."""

    kind: Literal["Deployment", "StatefulSet", "DaemonSet"]
    name: K8sName


class KubernetesBinding(Spec):
    """The service account a service runs as, and the workload that uses it."""

    namespace: K8sName
    service_account: K8sName
    workload: Workload
    restarted_by: Literal["vso", "reload"] = Field(
        "vso", description="Who restarts the workload after a rotation: vso (default; VSO's "
        "rolloutRestartTargets, once per synced secret) or reload (python -m rotation reload "
        "restarts it once per rotation, in the plan's order; VSO only syncs the Secret).")


class OutsideCluster(Spec):
    """A service outside Kubernetes: credentials via ``secrets-issue-dynamic`` on its host."""

    host: NonEmpty
    output: NonEmpty | None = None


class Service(Spec):
    """A workload that authenticates to Vault with its own policy set."""

    name: Name
    policies: PolicyList
    kubernetes: KubernetesBinding | None = None
    outside_cluster: OutsideCluster | None = Field(
        None, description="A service outside Kubernetes: it gets its database credentials "
        "through secrets-issue-dynamic on its host.")
    database_roles: Names = ()
    token_ttl_seconds: Ttl
    token_max_ttl_seconds: Ttl

    @model_validator(mode="after")
    def _inside_or_outside(self) -> Service:
        if self.outside_cluster is not None:
            refuse_together(["kubernetes"] if self.kubernetes is not None else [],
                            "outside_cluster", "a service runs in Kubernetes or outside it, "
                            "not both")
        return self


class KubernetesAuth(Spec):
    """The Kubernetes auth method (one role per service with a binding)."""

    path: MountPath
    host: Url
    audience: Str | None = None
    ca_cert: Annotated[str, Strict(), Field(pattern="-----BEGIN CERTIFICATE-----")] | None = (
        Field(None, description="PEM of the cluster's CA, for a Vault that runs outside the "
              "cluster (then Vault does not read the pod's service-account files)."))
    token_reviewer_jwt_secret: ConfigKey | None = Field(
        None, description="Pulumi config secret (pulumi config set --secret) holding the JWT of "
        "a ServiceAccount bound to system:auth-delegator, which Vault uses to call the "
        "TokenReview API. Without it Vault reviews each login with the login's own JWT, so "
        "every service account would need system:auth-delegator.")


class JwtRole(Spec):
    """A CI pipeline role bound to repository, branch and deployment environment."""

    name: Name
    policies: PolicyList
    bound_audiences: Annotated[tuple[NonEmpty, ...], Field(min_length=1)]
    repository: Annotated[str, Strict(), Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    branch: NonEmpty | None = Field(
        None, description="Runs on this branch: the token's ref must be refs/heads/<branch>.")
    pull_requests: Bool = Field(
        False, description="true: runs for pull requests of the repository instead of a "
        "branch: the token's ref must match refs/pull/*/merge (a glob). For read-only preview "
        "roles.")
    deployment_environment: Annotated[str, Strict(), Field(min_length=1, pattern=r"^[^*]+$")] = (
        Field(description="GitHub environment the job runs in (the token's environment claim); "
              "no '*' (claims may be matched as globs)."))
    user_claim: NonEmpty = "repository"
    token_ttl_seconds: Ttl
    token_max_ttl_seconds: Ttl

    @model_validator(mode="after")
    def _branch_or_pull_requests(self) -> JwtRole:
        if "pull_requests" in self.model_fields_set and not self.pull_requests:
            raise PydanticCustomError("const", "False is not True (leave pull_requests out for "
                                      "a branch role)", {"keys": ["pull_requests"]})
        if self.pull_requests:
            refuse_together(["branch"] if self.branch is not None else [], "pull_requests",
                            "a role runs for a branch or for pull requests, not both")
        elif self.branch is None:
            raise alternatives("set branch (a role for that branch's runs) or pull_requests: "
                               "true (a role for pull-request runs)")
        return self


PublicKey = Annotated[str, Strict(), Field(pattern="-----BEGIN PUBLIC KEY-----"),
                      AfterValidator(str.strip)]


class JwtAuth(Spec):
    """The JWT auth method for CI pipelines; exactly one key source is set."""

    path: MountPath
    bound_issuer: NonEmpty
    oidc_discovery_url: Url | None = None
    jwks_url: Url | None = None
    # Vault stores PEM keys without the trailing newline a YAML block adds.
    validation_pubkeys: tuple[PublicKey, ...] = ()
    roles: Annotated[tuple[JwtRole, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_key_source(self) -> JwtAuth:
        exactly_one_of(self, "oidc_discovery_url", "jwks_url", "validation_pubkeys")
        return self


class AuthMethods(Spec):
    """Auth methods this environment enables."""

    kubernetes: KubernetesAuth | None = None
    jwt: JwtAuth | None = None


OptionKey = Annotated[str, Field(pattern=r"^[a-z_]+$")]


class AuditDevice(Spec):
    """An audit device; ``options`` are passed to Vault (or rendered for OpenBao)."""

    path: MountPath
    type: Literal["file", "syslog", "socket"]
    description: Str = ""
    options: Annotated[dict[OptionKey, Str], WithJsonSchema({
        "type": "object", "additionalProperties": {"type": "string"},
        "propertyNames": {"pattern": "^[a-z_]+$"}})]


class AuditRequestHeader(Spec):
    """A request header that audit devices record."""

    name: Annotated[str, Strict(), Field(pattern=r"^[A-Za-z0-9-]+$")]
    hmac: Bool


class Audit(Spec):
    """Audit devices and the request headers they record."""

    devices: Annotated[tuple[AuditDevice, ...], Field(min_length=1)]
    request_headers: tuple[AuditRequestHeader, ...] = ()


class Generator(Spec):
    """How a ``generated`` secret's values are drawn (cryptographically random)."""

    length: Annotated[int, Strict(), Field(ge=16, le=256)] = 48
    alphabet: Literal["alphanumeric", "urlsafe", "full"] = "alphanumeric"


_MIRROR_TAKES = ("version", "source", "generator", "config_secret", "restores",
                 "keep_previous", "previous", "retired")


class StaticSecret(Spec):
    """A KV v2 secret this repository owns; ``version`` is what it must be at after apply.

    Raising ``version`` by one (python -m rotation bump) is a rotation; the
    program writes version N with cas = N-1. A dr mirror (``mirror_of``)
    declares neither: value and version come from prod.
    """

    mount: MountPath
    path: Annotated[str, Strict(),
                    Field(pattern=r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")] = Field(
        description="Path inside the mount, e.g. services/execution/broker-api")
    keys: Annotated[tuple[Annotated[str, Strict(), Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")],
                          ...], Field(min_length=1), AfterValidator(_unique), UniqueItems]
    version: Version | None = None
    declared_source: Literal["generated", "provided"] | None = Field(None, alias="source")
    generator: Generator | None = None
    config_secret: ConfigKey | None = Field(
        None, description="provided secrets: the Pulumi config secret holding a JSON object "
        "{key: value}")
    rotation_interval_seconds: Annotated[int, Strict(), Field(ge=3600, le=63_072_000)] | None = (
        None)
    consumers: Names = Field(description="services that must reload the secret after a "
                             "rotation")
    mirror_to_dr: Bool = Field(False, description="prod only: the dr stack carries the same "
                               "value and version")
    mirror_of: Literal["prod"] | None = Field(None, description="dr only: value and version "
                                              "come from prod's outputs")
    restores: Version | None = Field(
        None, description="a rollback (python -m rotation rollback): version `version` is "
        "written with the data of this earlier KV version, read from Vault's history at apply "
        "time (never from git); the next bump removes it")
    keep_previous: Bool = Field(
        False, description="a rotation keeps the previous value under <KEY>_PREVIOUS (read "
        "from Vault's history) until python -m rotation retire drops it")
    previous: Version | None = Field(
        None, description="written by bump for a keep_previous secret: the version "
        "(version - 1) whose keys are kept as <KEY>_PREVIOUS")
    retired: Version | None = Field(
        None, description="written by retire: this version holds version `retired`'s keys "
        "without the previous value; the next bump removes it")

    @model_validator(mode="before")
    @classmethod
    def _default_generator(cls, data: Any) -> Any:
        if (isinstance(data, dict) and data.get("source") == "generated"
                and "generator" not in data and "mirror_of" not in data):
            return {**data, "generator": {}}
        return data

    @model_validator(mode="after")
    def _owned_or_mirror(self) -> StaticSecret:
        if self.mirror_of is not None:
            refuse_together([k for k in _MIRROR_TAKES if k in self.model_fields_set
                             or (k == "source" and self.declared_source is not None)],
                            "mirror_of", "a dr mirror takes value and version from prod")
        elif None in (self.version, self.declared_source, self.rotation_interval_seconds):
            raise alternatives("set version, source and rotation_interval_seconds (an owned "
                               "secret), or only mirror_of (a dr copy of a prod secret)")
        return self

    @property
    def source(self) -> SecretSource:
        """Where the value comes from: generated, provided (config) or mirror (prod's)."""
        return "mirror" if self.mirror_of is not None else self.declared_source or "provided"

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


class DeliveryTarget(Spec):
    """Where Vault Secrets Operator resources go: a cluster context or a render directory."""

    context: NonEmpty | None = Field(None, description="kubeconfig context of the cluster")
    render_dir: NonEmpty | None = Field(
        None, description="write manifests here instead of applying them (review, local)")
    refresh_after_seconds: Annotated[int, Strict(), Field(ge=10, le=86400)] = 60
    # Vault Secrets Operator's own default renewal point.
    renewal_percent: Annotated[int, Strict(), Field(ge=10, le=90)] = 67

    @model_validator(mode="after")
    def _context_or_render_dir(self) -> DeliveryTarget:
        exactly_one_of(self, "context", "render_dir")
        return self


class Delivery(Spec):
    """How secrets reach workloads: VSO resources declared with pulumi-kubernetes."""

    kubernetes: DeliveryTarget


class EnvironmentSpec(Spec):
    """Everything one environment's Vault must contain.

    The value of the ``tradepulse-vault:spec`` key in ``Pulumi.<stack>.yaml``.
    Every difference between environments lives here.
    """

    environment: Annotated[str, Strict(), Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")] = Field(
        description="Environment name; must equal the stack name.")
    strict: Bool = Field(
        description="Held to the production rules: two audit devices, CAS and a version floor "
        "in the policy pack, and in the pull-request gate privilege gains, weakening and "
        "destructive changes fail unless acknowledged. Declared by every stack (true for prod, "
        "dr and any future production stack), never inferred from its name.")
    vault: VaultTarget = Field(description="How the Pulumi program reaches Vault. The token "
                               "always comes from VAULT_TOKEN, never from config.")
    limits: Limits
    kv_mounts: Annotated[tuple[KvMount, ...], Field(min_length=1)]
    database: DatabaseEngine | None = None
    jwt_issuer_keys: tuple[JwtIssuerKey, ...] = Field(
        (), description="Identity OIDC signing keys Vault uses to issue JWTs; Vault rotates "
        "them on rotation_period and keeps the previous key published for verification_ttl.")
    policies: PolicyList = Field(description="ACL policies to write; each name is the stem of "
                                 "policies/acl/<name>.hcl.")
    services: tuple[Service, ...] = Field(description="Workloads that authenticate to Vault. "
                                          "Each gets a Kubernetes auth role bound to its "
                                          "service account and namespace.")
    auth: AuthMethods
    audit: Audit
    static_secrets: tuple[StaticSecret, ...] = ()
    delivery_config: Delivery | None = Field(None, alias="delivery")
    _source: str = PrivateAttr(default="")

    def model_post_init(self, context: Any, /) -> None:
        """Keep the stack file's name, given by the loader as validation context."""
        if isinstance(context, dict) and isinstance(context.get("source"), str):
            self._source = context["source"]

    @property
    def source(self) -> str:
        """The stack file the spec was read from (``Pulumi.<stack>.yaml``), for messages."""
        return self._source

    @property
    def delivery(self) -> DeliveryTarget | None:
        """Where the delivery objects go (``delivery.kubernetes``), or None."""
        return None if self.delivery_config is None else self.delivery_config.kubernetes

    @cached_property
    def _secrets_by_id(self) -> dict[str, StaticSecret]:
        """Every static secret by id, built once: a plan looks up one per rotation."""
        index: dict[str, StaticSecret] = {}
        for secret in self.static_secrets:
            index.setdefault(secret.id, secret)  # the first, as a scan would find
        return index

    @cached_property
    def _services_by_name(self) -> dict[str, tuple[int, Service]]:
        index: dict[str, tuple[int, Service]] = {}
        for position, service in enumerate(self.services):
            index.setdefault(service.name, (position, service))
        return index

    def secret(self, secret_id: str) -> StaticSecret | None:
        """Return the static secret ``<mount>/<path>``, or None."""
        return self._secrets_by_id.get(secret_id)

    def service(self, name: str) -> Service | None:
        """Return the service called ``name``, or None."""
        found = self._services_by_name.get(name)
        return None if found is None else found[1]

    def services_named(self, names: Sequence[str]) -> list[Service]:
        """Return the services called any of ``names``, in declaration order (unknown left out)."""
        found = (self._services_by_name.get(name) for name in set(names))
        return [service for _, service in sorted((f for f in found if f is not None),
                                                 key=lambda f: f[0])]


KubernetesDelivery = DeliveryTarget  # the name components and the CLI know
