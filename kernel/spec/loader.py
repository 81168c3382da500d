"""The one loader: stack config -> validated, typed :class:`EnvironmentSpec`.

Validation happens in two passes, both before any resource is registered:

1. JSON Schema (``kernel/schema/environment.schema.json``): shape, types,
   unknown keys, TTL ranges.
2. Cross-references: every policy has an HCL file, every role names a declared
   policy, TTLs respect their max and the environment's caps, names are unique.

Every problem is reported with the stack file and the key path
(``Pulumi.prod.yaml: tradepulse-vault:spec.services[0].policies[1]: ...``), all
problems at once, so a reviewer fixes a bad spec in one round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from kernel import paths
from kernel.redact import describe, plainly_not_secret
from kernel.spec import schema
from kernel.spec.marks import duplicate_keys, line_of
from kernel.spec.model import (
    PREVIOUS_SUFFIX,
    Audit,
    AuditDevice,
    AuditRequestHeader,
    AuthMethods,
    DatabaseConnection,
    DatabaseEngine,
    DatabaseRole,
    DatabaseStaticRole,
    EnvironmentSpec,
    Flavour,
    Generator,
    JwtAuth,
    JwtIssuerKey,
    JwtRole,
    KubernetesAuth,
    KubernetesBinding,
    KubernetesDelivery,
    KvMount,
    Limits,
    OutsideCluster,
    SecretSource,
    Service,
    StaticSecret,
    VaultTarget,
    Workload,
)
from kernel.spec.stackfile import YamlDocument, parse_yaml

if TYPE_CHECKING:
    import jsonschema

KeyPath = tuple[str | int, ...]

# 20 minutes is pulumi-vault's own default for the provider's child token.
DEFAULT_PROVIDER_TOKEN_TTL_SECONDS = 20 * 60
DEFAULT_DB_MAX_OPEN_CONNECTIONS = 4


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, at one key path."""

    path: KeyPath
    message: str
    line: int | None = None  # known when the spec was read from a file (kernel.spec.marks)

    def render(self, source: str) -> str:
        """Return ``<file>: <key path>: <message>`` (`` (line N)`` when known)."""
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{source}: {format_key_path(self.path)}: {self.message}{where}"


class SpecError(ValueError):
    """A stack file's spec is invalid; ``str()`` names the file and every key path."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = [p.render(source) for p in self.problems]
        super().__init__("\n".join(lines))


def format_key_path(path: KeyPath) -> str:
    """Render a key path as ``tradepulse-vault:spec.kv_mounts[0].path``."""
    out = paths.SPEC_CONFIG_KEY
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_RULE_MESSAGES = {
    "minimum": "{shown} is out of range: must be at least {expected}",
    "maximum": "{shown} is out of range: must be at most {expected}",
    "exclusiveMinimum": "{shown} is out of range: must be more than {expected}",
    "exclusiveMaximum": "{shown} is out of range: must be less than {expected}",
    "type": "{shown} is not of type {expected!r}",
    "pattern": "{shown} does not match {expected!r}",
    "const": "{shown} is not {expected!r}",
    "minLength": "{shown} is too short: at least {expected} character(s)",
    "maxLength": "{shown} is too long: at most {expected} character(s)",
    "minItems": "{shown} has too few items: at least {expected}",
    "maxItems": "{shown} has too many items: at most {expected}",
    "uniqueItems": "{shown} has repeated items",
}


def _schema_message(err: jsonschema.ValidationError) -> str:
    """Say what is wrong with ``err.instance``, showing it only if plainly not a secret.

    jsonschema's own messages quote the instance; the value at a wrong-typed or
    misspelt key may be a token pasted into the wrong line, so it goes through
    :func:`kernel.redact.describe`. Schema values (types, enums, bounds) are ours.
    """
    rule, expected = str(err.validator), err.validator_value
    shown = describe(err.instance)
    if rule == "enum":
        return f"{shown} is not one of {', '.join(repr(v) for v in cast(list[Any], expected))}"
    template = _RULE_MESSAGES.get(rule, "{shown} does not satisfy the schema's {rule!r} rule")
    return template.format(shown=shown, expected=expected, rule=rule)


def _schema_problems(data: object) -> list[Problem]:
    problems: list[Problem] = []
    for err in schema.validator().iter_errors(data):
        where: KeyPath = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            known = set(cast(Mapping[str, Any], err.schema).get("properties", {}))
            for key in sorted(set(err.instance) - known, key=str):
                # A line pasted into the wrong place can make a secret a key.
                name = str(key)
                name = name if plainly_not_secret(name) else f"<{len(name)}-character key>"
                problems.append(Problem((*where, name), "unknown key"))
        elif err.validator == "required":
            missing = str(err.message).split("'")[1] if "'" in err.message else err.message
            problems.append(Problem((*where, missing), "required key is missing"))
        elif err.validator in {"oneOf", "anyOf"} and _alternatives_message(where):
            problems.append(Problem(where, _alternatives_message(where)))
        elif err.validator is None and err.schema is False:
            problems.extend(_excluded_key_problems(data, where, tuple(err.absolute_schema_path)))
        else:
            problems.append(Problem(where, _schema_message(err)))
    return sorted(set(problems), key=lambda p: (format_key_path(p.path), p.message))


def _alternatives_message(where: KeyPath) -> str:
    """Say which alternatives a ``oneOf``/``anyOf`` at ``where`` offers ("" if none known)."""
    if where and where[-1] == "jwt":
        return "set exactly one of oidc_discovery_url, jwks_url, validation_pubkeys"
    if len(where) >= 2 and where[-2] == "static_secrets":
        return ("set version, source and rotation_interval_seconds (an owned secret), "
                "or only mirror_of (a dr copy of a prod secret)")
    if where[-3:-1] == ("jwt", "roles"):
        return ("set branch (a role for that branch's runs) or pull_requests: true (a role "
                "for pull-request runs)")
    return ""


def _excluded_key_problems(data: object, where: KeyPath, schema_path: tuple[str | int, ...]
                           ) -> list[Problem]:
    """Name the keys a ``dependentSchemas`` entry forbids (``{"key": false}``) that are present.

    jsonschema reports a ``false`` subschema at the enclosing object without
    the key, so the key is found here: the schema path ends in
    ``dependentSchemas/<trigger>/properties``.
    """
    dependent: Any = schema.validator().schema
    for part in schema_path[:-1]:
        dependent = dependent[part]
    node, trigger = dependent[schema_path[-1]], schema_path[-2]
    instance: Any = data
    for part in where:
        instance = instance[part]
    reason = dependent.get("description", "")
    return [Problem((*where, key), f"not allowed together with {trigger}: {reason}")
            for key, sub in node.items() if sub is False and key in instance]


def _duplicates(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for name in names:
        (dupes if name in seen else seen).add(name)
    return dupes


def _ttl_pair(  # noqa: PLR0917 - private helper, called with keywords-in-order
    problems: list[Problem], where: KeyPath, ttl_key: str, max_key: str,
    item: Mapping[str, Any], cap: int, cap_name: str,
) -> None:
    ttl, max_ttl = item[ttl_key], item[max_key]
    if ttl > max_ttl:
        problems.append(Problem((*where, ttl_key), f"{ttl} exceeds {max_key} ({max_ttl})"))
    if max_ttl > cap:
        problems.append(
            Problem((*where, max_key), f"{max_ttl} exceeds limits.{cap_name} ({cap})")
        )


def _reference_problems(  # noqa: PLR0912 - one linear list of cross-checks reads best
    data: Mapping[str, Any], stack: str | None, policy_dir: Path
) -> list[Problem]:
    problems: list[Problem] = []
    if stack is not None and data["environment"] != stack:
        problems.append(
            Problem(("environment",),
                    f"{describe(data['environment'])} does not match stack {describe(stack)}")
        )
    limits = data["limits"]
    declared = set(data["policies"])
    for i, name in enumerate(data["policies"]):
        if not (policy_dir / f"{name}.hcl").is_file():
            problems.append(
                Problem(("policies", i), f"no HCL file {policy_dir.name}/{name}.hcl for policy "
                        f"{describe(name)}")
            )

    def check_policy_refs(where: KeyPath, names: Sequence[str]) -> None:
        for j, name in enumerate(names):
            if name not in declared:
                problems.append(
                    Problem((*where, "policies", j),
                            f"unknown policy {describe(name)} (not in policies)")
                )

    mount_paths = [m["path"] for m in data["kv_mounts"]]
    database = data.get("database")
    role_names: set[str] = set()
    if database is not None:
        mount_paths.append(database["mount"])
        role_names = {r["name"] for r in database["roles"]}
        for i, role in enumerate(database["roles"]):
            _ttl_pair(problems, ("database", "roles", i), "default_ttl_seconds",
                      "max_ttl_seconds", role, limits["max_database_ttl_seconds"],
                      "max_database_ttl_seconds")
        static_names = [r["name"] for r in database.get("static_roles", [])]
        for name in sorted(_duplicates([r["name"] for r in database["roles"]] + static_names)):
            problems.append(Problem(("database", "roles"), f"duplicate role name {describe(name)}"))
        for i, role in enumerate(database.get("static_roles", [])):
            if "rotation_window_seconds" in role and "rotation_schedule" not in role:
                problems.append(Problem(("database", "static_roles", i,
                                         "rotation_window_seconds"),
                                        "a rotation window needs a rotation_schedule"))
            for j, other in enumerate(role.get("paired_with", [])):
                if other not in static_names or other == role["name"]:
                    problems.append(Problem(("database", "static_roles", i, "paired_with", j),
                                            f"{describe(other)} is not another static role"))
    for name in sorted(_duplicates(mount_paths)):
        problems.append(Problem(("kv_mounts",), f"mount path {describe(name)} is declared twice"))

    auth = data["auth"]
    for i, svc in enumerate(data["services"]):
        where: KeyPath = ("services", i)
        check_policy_refs(where, svc["policies"])
        _ttl_pair(problems, where, "token_ttl_seconds", "token_max_ttl_seconds", svc,
                  limits["max_token_ttl_seconds"], "max_token_ttl_seconds")
        for j, role in enumerate(svc.get("database_roles", [])):
            if role not in role_names:
                problems.append(
                    Problem((*where, "database_roles", j),
                            f"unknown database role {describe(role)}")
                )
        if "kubernetes" in svc and "kubernetes" not in auth:
            problems.append(
                Problem((*where, "kubernetes"), "service binds a service account but "
                        "auth.kubernetes is not declared")
            )
    for name in sorted(_duplicates(s["name"] for s in data["services"])):
        problems.append(Problem(("services",), f"duplicate service name {describe(name)}"))

    jwt = auth.get("jwt")
    if jwt is not None:
        for i, role in enumerate(jwt["roles"]):
            where = ("auth", "jwt", "roles", i)
            check_policy_refs(where, role["policies"])
            _ttl_pair(problems, where, "token_ttl_seconds", "token_max_ttl_seconds", role,
                      limits["max_token_ttl_seconds"], "max_token_ttl_seconds")
        for name in sorted(_duplicates(r["name"] for r in jwt["roles"])):
            problems.append(Problem(("auth", "jwt", "roles"),
                                    f"duplicate role name {describe(name)}"))
    if "kubernetes" in auth and "jwt" in auth and auth["kubernetes"]["path"] == jwt["path"]:
        problems.append(Problem(("auth", "jwt", "path"), "same path as auth.kubernetes.path"))

    devices = data["audit"]["devices"]
    for i, dev in enumerate(devices):
        if dev["type"] == "file" and "file_path" not in dev["options"]:
            problems.append(
                Problem(("audit", "devices", i, "options", "file_path"),
                        "required key is missing for a file audit device")
            )
    for name in sorted(_duplicates(d["path"] for d in devices)):
        problems.append(Problem(("audit", "devices"), f"duplicate audit path {describe(name)}"))
    for name in sorted(_duplicates(k["name"] for k in data.get("jwt_issuer_keys", []))):
        problems.append(Problem(("jwt_issuer_keys",), f"duplicate key name {describe(name)}"))
    problems.extend(_static_secret_problems(data, policy_dir))
    return problems


def _policy_reader(policy_dir: Path) -> Callable[[Mapping[str, Any], str], bool]:
    """Return ``can_read(service, api_path)``: whether the service's policies grant read there."""
    from kernel.policy_files import PolicyParseError, allows, parse_policy

    parsed: dict[str, dict[str, frozenset[str]]] = {}

    def can_read(svc: Mapping[str, Any], api_path: str) -> bool:
        readable = False
        for policy in svc["policies"]:
            if policy not in parsed and (policy_dir / f"{policy}.hcl").is_file():
                try:
                    parsed[policy] = parse_policy(
                        (policy_dir / f"{policy}.hcl").read_text(encoding="utf-8"),
                        f"{policy}.hcl")
                except PolicyParseError:
                    parsed[policy] = {}
            readable = readable or allows(parsed.get(policy, {}), api_path, "read")
        return readable

    return can_read


def _static_role_problems(
    data: Mapping[str, Any], services: Mapping[str, Mapping[str, Any]],
    can_read: Callable[[Mapping[str, Any], str], bool],
) -> list[Problem]:
    """Consumers of a database static role must exist and be able to read its credentials."""
    problems: list[Problem] = []
    database = data.get("database") or {}
    for i, role in enumerate(database.get("static_roles", [])):
        creds_path = f"{database['mount']}/static-creds/{role['name']}"
        for j, consumer in enumerate(role["consumers"]):
            where: KeyPath = ("database", "static_roles", i, "consumers", j)
            if consumer not in services:
                problems.append(Problem(where, f"unknown service {describe(consumer)}"))
            elif not can_read(services[consumer], creds_path):
                problems.append(Problem(
                    where, f"service {describe(consumer)} cannot read {creds_path} with policies "
                    f"{services[consumer]['policies']}"))
    return problems


def _static_secret_problems(  # noqa: PLR0912 - one linear list of cross-checks reads best
    data: Mapping[str, Any], policy_dir: Path
) -> list[Problem]:
    problems: list[Problem] = []
    kv_mounts = {m["path"] for m in data["kv_mounts"]}
    services = {s["name"]: s for s in data["services"]}
    env = data["environment"]
    can_read = _policy_reader(policy_dir)
    problems.extend(_static_role_problems(data, services, can_read))
    for i, secret in enumerate(data.get("static_secrets", [])):
        where: KeyPath = ("static_secrets", i)
        if secret["mount"] not in kv_mounts:
            problems.append(Problem((*where, "mount"),
                                    f"{describe(secret['mount'])} is not a kv_mounts path"))
        if secret.get("source") == "generated" and "config_secret" in secret:
            problems.append(Problem((*where, "config_secret"), "only provided secrets take "
                                    "their value from config"))
        if secret.get("source") == "provided":
            if "config_secret" not in secret:
                problems.append(Problem((*where, "config_secret"), "required key is missing "
                                        "for a provided secret"))
            if "generator" in secret:
                problems.append(Problem((*where, "generator"), "only generated secrets have a "
                                        "generator"))
        if secret.get("mirror_to_dr") and env != "prod":
            problems.append(Problem((*where, "mirror_to_dr"), "only prod secrets are mirrored "
                                    "to dr"))
        if "mirror_of" in secret and env != "dr":
            problems.append(Problem((*where, "mirror_of"), "only the dr stack holds mirrors"))
        restores, version = secret.get("restores"), secret.get("version")
        if restores is not None and isinstance(version, int) and restores >= version - 1:
            # version N+1 restores M: M must be older than the version it replaces (N).
            problems.append(Problem((*where, "restores"), f"restores {restores} must be lower "
                                    f"than {version - 1}, the version this rollback replaces"))
        problems.extend(_lifecycle_problems(secret, where))
        data_path = f"{secret['mount']}/data/{secret['path']}"
        for j, consumer in enumerate(secret["consumers"]):
            svc = services.get(consumer)
            if svc is None:
                problems.append(Problem((*where, "consumers", j),
                                        f"unknown service {describe(consumer)}"))
                continue
            if not can_read(svc, data_path):
                problems.append(Problem(
                    (*where, "consumers", j),
                    f"service {describe(consumer)} cannot read {data_path} with policies "
                    f"[{', '.join(describe(p) for p in svc['policies'])}]"))
    consumers = {c for s in data.get("static_secrets", []) for c in s["consumers"]}
    consumers |= {c for r in (data.get("database") or {}).get("static_roles", [])
                  for c in r["consumers"]}
    for i, svc in enumerate(data["services"]):
        needs = svc["name"] in consumers or bool(svc.get("database_roles"))
        if needs and "kubernetes" not in svc and "outside_cluster" not in svc:
            problems.append(Problem(
                ("services", i), f"service {describe(svc['name'])} consumes secrets but has "
                "neither kubernetes (Vault Secrets Operator) nor outside_cluster "
                "(secrets-issue-dynamic)"))
        if "kubernetes" in svc and "delivery" not in data:
            problems.append(Problem(("services", i, "kubernetes"), "a Kubernetes service needs "
                                    "delivery.kubernetes (a context or a render_dir)"))
    ids = [f"{s['mount']}/{s['path']}" for s in data.get("static_secrets", [])]
    for name in sorted(_duplicates(ids)):
        problems.append(Problem(("static_secrets",), f"secret {describe(name)} is declared twice"))
    return problems


def _lifecycle_problems(secret: Mapping[str, Any], where: KeyPath) -> list[Problem]:
    """Check ``previous`` and ``retired``: each names the version just before ``version``."""
    problems = []
    version = secret.get("version")
    marks = [k for k in ("restores", "previous", "retired") if k in secret]
    if len(marks) > 1:
        problems.append(Problem((*where, marks[1]), f"{marks[1]} cannot be declared together "
                                f"with {marks[0]} (one edit writes one of them)"))
    for name in ("previous", "retired"):
        value = secret.get(name)
        if value is not None and isinstance(version, int) and value != version - 1:
            problems.append(Problem((*where, name), f"{name} {value} must be {version - 1}, "
                                    "the version before this one"))
    if "previous" in secret and not secret.get("keep_previous"):
        problems.append(Problem((*where, "previous"), "only a keep_previous: true secret keeps "
                                "a previous value"))
    clash = sorted(set(secret.get("keys", [])) & {f"{k}{PREVIOUS_SUFFIX}"
                                                  for k in secret.get("keys", [])})
    if secret.get("keep_previous") and clash:
        problems.append(Problem((*where, "keys"), f"key {clash[0]} is where keep_previous keeps "
                                f"the previous value of {clash[0][:-len(PREVIOUS_SUFFIX)]}"))
    return problems


def _build(data: Mapping[str, Any], source: str) -> EnvironmentSpec:
    vault = data["vault"]
    database = data.get("database")
    auth = data["auth"]
    k8s = auth.get("kubernetes")
    jwt = auth.get("jwt")
    return EnvironmentSpec(
        environment=data["environment"],
        source=source,
        strict=data["strict"],
        vault=VaultTarget(
            address=vault["address"].rstrip("/"),
            flavour=cast(Flavour, vault["flavour"]),
            namespace=vault.get("namespace") or None,
            provider_token_ttl_seconds=vault.get(
                "provider_token_ttl_seconds", DEFAULT_PROVIDER_TOKEN_TTL_SECONDS
            ),
        ),
        limits=Limits(**data["limits"]),
        kv_mounts=tuple(
            KvMount(
                path=m["path"],
                description=m.get("description", ""),
                cas_required=m["cas_required"],
                max_versions=m["max_versions"],
                delete_version_after_seconds=m.get("delete_version_after_seconds", 0),
            )
            for m in data["kv_mounts"]
        ),
        database=None if database is None else DatabaseEngine(
            mount=database["mount"],
            connection=DatabaseConnection(
                name=database["connection"]["name"],
                url_secret=database["connection"]["url_secret"],
                username_secret=database["connection"]["username_secret"],
                password_secret=database["connection"]["password_secret"],
                verify_connection=database["connection"].get("verify_connection", True),
                max_open_connections=database["connection"].get(
                    "max_open_connections", DEFAULT_DB_MAX_OPEN_CONNECTIONS
                ),
                root_rotation=database["connection"].get("root_rotation", 1),
            ),
            roles=tuple(
                DatabaseRole(
                    name=r["name"],
                    creation_statements=tuple(r["creation_statements"]),
                    revocation_statements=tuple(r["revocation_statements"]),
                    default_ttl_seconds=r["default_ttl_seconds"],
                    max_ttl_seconds=r["max_ttl_seconds"],
                    lease_generation=r.get("lease_generation", 1),
                )
                for r in database["roles"]
            ),
            static_roles=tuple(
                DatabaseStaticRole(
                    name=r["name"],
                    username=r["username"],
                    rotation_period_seconds=r.get("rotation_period_seconds"),
                    rotation_schedule=r.get("rotation_schedule"),
                    rotation_window_seconds=r.get("rotation_window_seconds"),
                    rotation_statements=tuple(r["rotation_statements"]),
                    version=r["version"],
                    consumers=tuple(r["consumers"]),
                    paired_with=tuple(r.get("paired_with", ())),
                )
                for r in database.get("static_roles", [])
            ),
        ),
        jwt_issuer_keys=tuple(
            JwtIssuerKey(
                name=k["name"],
                algorithm=k.get("algorithm", "RS256"),
                rotation_period_seconds=k["rotation_period_seconds"],
                verification_ttl_seconds=k["verification_ttl_seconds"],
                allowed_client_ids=tuple(k.get("allowed_client_ids", ())),
                version=k.get("version", 1),
            )
            for k in data.get("jwt_issuer_keys", [])
        ),
        policies=tuple(data["policies"]),
        services=tuple(
            Service(
                name=s["name"],
                policies=tuple(s["policies"]),
                kubernetes=None if "kubernetes" not in s else KubernetesBinding(
                    namespace=s["kubernetes"]["namespace"],
                    service_account=s["kubernetes"]["service_account"],
                    workload=Workload(**s["kubernetes"]["workload"]),
                    restarted_by=s["kubernetes"].get("restarted_by", "vso"),
                ),
                outside_cluster=None if "outside_cluster" not in s else OutsideCluster(
                    host=s["outside_cluster"]["host"],
                    output=s["outside_cluster"].get("output"),
                ),
                database_roles=tuple(s.get("database_roles", ())),
                token_ttl_seconds=s["token_ttl_seconds"],
                token_max_ttl_seconds=s["token_max_ttl_seconds"],
            )
            for s in data["services"]
        ),
        auth=AuthMethods(
            kubernetes=None if k8s is None else KubernetesAuth(
                path=k8s["path"], host=k8s["host"], audience=k8s.get("audience"),
                ca_cert=k8s.get("ca_cert"),
                token_reviewer_jwt_secret=k8s.get("token_reviewer_jwt_secret"),
            ),
            jwt=None if jwt is None else JwtAuth(
                path=jwt["path"],
                bound_issuer=jwt["bound_issuer"],
                oidc_discovery_url=jwt.get("oidc_discovery_url"),
                jwks_url=jwt.get("jwks_url"),
                # Vault stores PEM keys without the trailing newline a YAML block adds.
                validation_pubkeys=tuple(k.strip() for k in jwt.get("validation_pubkeys", ())),
                roles=tuple(
                    JwtRole(
                        name=r["name"],
                        policies=tuple(r["policies"]),
                        bound_audiences=tuple(r["bound_audiences"]),
                        repository=r["repository"],
                        branch=r.get("branch"),
                        pull_requests=bool(r.get("pull_requests", False)),
                        deployment_environment=r["deployment_environment"],
                        user_claim=r.get("user_claim", "repository"),
                        token_ttl_seconds=r["token_ttl_seconds"],
                        token_max_ttl_seconds=r["token_max_ttl_seconds"],
                    )
                    for r in jwt["roles"]
                ),
            ),
        ),
        audit=Audit(
            devices=tuple(
                AuditDevice(
                    path=d["path"],
                    type=d["type"],
                    description=d.get("description", ""),
                    options=tuple(sorted(d["options"].items())),
                )
                for d in data["audit"]["devices"]
            ),
            request_headers=tuple(
                AuditRequestHeader(name=h["name"], hmac=h["hmac"])
                for h in data["audit"].get("request_headers", [])
            ),
        ),
        static_secrets=tuple(_build_secret(s) for s in data.get("static_secrets", [])),
        delivery=_build_delivery(data.get("delivery")),
    )


def _build_delivery(d: Mapping[str, Any] | None) -> KubernetesDelivery | None:
    if d is None:
        return None
    k8s = d["kubernetes"]
    return KubernetesDelivery(
        context=k8s.get("context"),
        render_dir=k8s.get("render_dir"),
        refresh_after_seconds=k8s.get("refresh_after_seconds", 60),
        # Vault Secrets Operator's own default renewal point.
        renewal_percent=k8s.get("renewal_percent", 67),
    )


DEFAULT_GENERATOR = {"length": 48, "alphabet": "alphanumeric"}


def _build_secret(s: Mapping[str, Any]) -> StaticSecret:
    source = "mirror" if "mirror_of" in s else s["source"]
    gen = {**DEFAULT_GENERATOR, **s.get("generator", {})} if source == "generated" else None
    return StaticSecret(
        mount=s["mount"],
        path=s["path"],
        keys=tuple(s["keys"]),
        version=s.get("version"),
        source=cast(SecretSource, source),
        generator=None if gen is None else Generator(length=gen["length"],
                                                     alphabet=gen["alphabet"]),
        config_secret=s.get("config_secret"),
        rotation_interval_seconds=s.get("rotation_interval_seconds"),
        consumers=tuple(s["consumers"]),
        mirror_to_dr=bool(s.get("mirror_to_dr", False)),
        mirror_of=s.get("mirror_of"),
        restores=s.get("restores"),
        keep_previous=bool(s.get("keep_previous", False)),
        previous=s.get("previous"),
        retired=s.get("retired"),
    )


def parse_spec(
    data: object, *, source: str, stack: str | None = None,
    policy_dir: Path = paths.POLICY_DIR,
) -> EnvironmentSpec:
    """Validate ``data`` (the spec value) and return the typed spec.

    ``source`` names the stack file in messages; ``stack``, when given, must
    equal the spec's ``environment``. Raises :class:`SpecError` listing every
    problem found.
    """
    problems = _schema_problems(data)
    if problems:
        raise SpecError(source, problems)
    spec_data = cast(Mapping[str, Any], data)
    problems = _reference_problems(spec_data, stack, policy_dir)
    if problems:
        raise SpecError(source, problems)
    return _build(spec_data, source)


def read_stack_document(path: Path) -> YamlDocument:
    """Read and parse a stack file once (text, nodes, data); :class:`SpecError` naming the file.

    The document's data is a mapping with a ``config:`` mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path.name, [Problem((), "stack file does not exist")]) from None
    except IsADirectoryError:
        raise SpecError(path.name, [Problem((), "a directory, not a stack file")]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError(path.name, [Problem((), f"cannot be read ({reason})")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(path.name, [Problem((), f"not UTF-8 text ({exc.reason} at byte "
                                            f"{exc.start})")]) from None
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(path.name, [Problem((), f"{where}{reason}")]) from None
    refuse_duplicate_keys(document, path.name)
    _config_of(document, path.name)
    return document


def refuse_duplicate_keys(document: YamlDocument, source: str) -> None:
    """Raise :class:`SpecError` for every key given twice (from the same parse).

    YAML loaders keep the last of two equal keys without a word, so a typo'd
    copy of ``version:`` or ``policies:`` would silently win or lose. Keys under
    the spec are named by their spec key path; others by their dotted place in
    the file.
    """
    problems = []
    for key_path, line, first in duplicate_keys(document.root):
        if key_path[:2] == ("config", paths.SPEC_CONFIG_KEY):
            problems.append(Problem(key_path[2:], f"duplicate key (first at line {first}); "
                                    "YAML would keep only the last", line=line))
        else:
            where = ".".join(str(part) for part in key_path)
            problems.append(Problem((), f"duplicate key `{where}` (first at line {first}); "
                                    "YAML would keep only the last", line=line))
    if problems:
        raise SpecError(source, problems)


def _config_of(document: YamlDocument, source: str) -> Mapping[str, Any]:
    doc = document.data
    if not isinstance(doc, Mapping) or not isinstance(doc.get("config"), Mapping):
        raise SpecError(source, [Problem((), "no `config:` mapping in the stack file")])
    return cast(Mapping[str, Any], doc["config"])


def read_stack_file(path: Path) -> Mapping[str, Any]:
    """Parse a stack file's YAML; raise :class:`SpecError` naming the file on bad YAML."""
    return cast(Mapping[str, Any], read_stack_document(path).data)


def load_stack_file(
    path: Path, *, policy_dir: Path = paths.POLICY_DIR, document: YamlDocument | None = None,
) -> EnvironmentSpec:
    """Load and validate the spec of the stack file at ``path`` (``Pulumi.<stack>.yaml``).

    ``document``, when the caller has already parsed the file
    (:func:`read_stack_document`), is used instead of reading it again.
    """
    if document is None:
        document = read_stack_document(path)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    config = _config_of(document, path.name)
    if paths.SPEC_CONFIG_KEY not in config:
        raise SpecError(path.name, [Problem((), "required key is missing")])
    try:
        return parse_spec(config[paths.SPEC_CONFIG_KEY], source=path.name, stack=stack,
                          policy_dir=policy_dir)
    except SpecError as exc:
        raise with_lines(exc, document.root) from None


def with_lines(exc: SpecError, root: yaml.Node | None) -> SpecError:
    """Return ``exc`` with each problem's line, found in the file's node tree (same parse)."""
    return SpecError(exc.source, [
        replace(p, line=line_of(root, ("config", paths.SPEC_CONFIG_KEY, *p.path)))
        for p in exc.problems])
