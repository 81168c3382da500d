"""The rules that need more than one key of a spec: references, pairs and caps.

Run after the model (:mod:`kernel.spec.model`) has accepted the spec's shape,
on the typed spec it built: every policy has an HCL file, every role names a
declared policy, TTLs respect their max and the environment's caps, names are
unique, consumers exist and their policies let them read what they consume,
and the lifecycle marks (``restores``, ``previous``, ``retired``) name the
right versions. An optional key the file leaves out, or gives as null, is
None here. Each problem names its key path
(:class:`kernel.spec.messages.Problem`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from kernel.naming import static_creds_path
from kernel.redact import describe
from kernel.spec.messages import KeyPath, Problem
from kernel.spec.model import (
    PREVIOUS_SUFFIX,
    DatabaseEngine,
    EnvironmentSpec,
    Service,
    StaticSecret,
)


def _duplicates(names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dupes: set[str] = set()
    for name in names:
        (dupes if name in seen else seen).add(name)
    return dupes


def _ttl_pair(  # noqa: PLR0917 - private helper, called with keywords-in-order
    problems: list[Problem], where: KeyPath, ttl_key: str, max_key: str,
    item: object, cap: int, cap_name: str,
) -> None:
    ttl, max_ttl = getattr(item, ttl_key), getattr(item, max_key)
    if ttl > max_ttl:
        problems.append(Problem((*where, ttl_key), f"{ttl} exceeds {max_key} ({max_ttl})"))
    if max_ttl > cap:
        problems.append(
            Problem((*where, max_key), f"{max_ttl} exceeds limits.{cap_name} ({cap})")
        )


def reference_problems(  # noqa: PLR0912 - one linear list of cross-checks reads best
    spec: EnvironmentSpec, stack: str | None, policy_dir: Path
) -> list[Problem]:
    """Every problem across keys of ``spec`` (what the model accepted) for ``stack``."""
    problems: list[Problem] = []
    if stack is not None and spec.environment != stack:
        problems.append(
            Problem(("environment",),
                    f"{describe(spec.environment)} does not match stack {describe(stack)}")
        )
    limits = spec.limits
    declared = set(spec.policies)
    for i, name in enumerate(spec.policies):
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

    mount_paths = [m.path for m in spec.kv_mounts]
    database = spec.database
    role_names: set[str] = set()
    if database is not None:
        mount_paths.append(database.mount)
        role_names = {r.name for r in database.roles}
        for i, role in enumerate(database.roles):
            _ttl_pair(problems, ("database", "roles", i), "default_ttl_seconds",
                      "max_ttl_seconds", role, limits.max_database_ttl_seconds,
                      "max_database_ttl_seconds")
        static_names = [r.name for r in database.static_roles]
        for name in sorted(_duplicates([r.name for r in database.roles] + static_names)):
            problems.append(Problem(("database", "roles"), f"duplicate role name {describe(name)}"))
        for i, static in enumerate(database.static_roles):
            if static.rotation_window_seconds is not None and static.rotation_schedule is None:
                problems.append(Problem(("database", "static_roles", i,
                                         "rotation_window_seconds"),
                                        "a rotation window needs a rotation_schedule"))
            for j, other in enumerate(static.paired_with):
                if other not in static_names or other == static.name:
                    problems.append(Problem(("database", "static_roles", i, "paired_with", j),
                                            f"{describe(other)} is not another static role"))
    for name in sorted(_duplicates(mount_paths)):
        problems.append(Problem(("kv_mounts",), f"mount path {describe(name)} is declared twice"))

    auth = spec.auth
    for i, svc in enumerate(spec.services):
        where: KeyPath = ("services", i)
        check_policy_refs(where, svc.policies)
        _ttl_pair(problems, where, "token_ttl_seconds", "token_max_ttl_seconds", svc,
                  limits.max_token_ttl_seconds, "max_token_ttl_seconds")
        for j, db_role in enumerate(svc.database_roles):
            if db_role not in role_names:
                problems.append(
                    Problem((*where, "database_roles", j),
                            f"unknown database role {describe(db_role)}")
                )
        if svc.kubernetes is not None and auth.kubernetes is None:
            problems.append(
                Problem((*where, "kubernetes"), "service binds a service account but "
                        "auth.kubernetes is not declared")
            )
    for name in sorted(_duplicates(s.name for s in spec.services)):
        problems.append(Problem(("services",), f"duplicate service name {describe(name)}"))

    jwt = auth.jwt
    if jwt is not None:
        for i, jwt_role in enumerate(jwt.roles):
            where = ("auth", "jwt", "roles", i)
            check_policy_refs(where, jwt_role.policies)
            _ttl_pair(problems, where, "token_ttl_seconds", "token_max_ttl_seconds", jwt_role,
                      limits.max_token_ttl_seconds, "max_token_ttl_seconds")
        for name in sorted(_duplicates(r.name for r in jwt.roles)):
            problems.append(Problem(("auth", "jwt", "roles"),
                                    f"duplicate role name {describe(name)}"))
        if auth.kubernetes is not None and auth.kubernetes.path == jwt.path:
            problems.append(Problem(("auth", "jwt", "path"), "same path as auth.kubernetes.path"))

    devices = spec.audit.devices
    for i, dev in enumerate(devices):
        if dev.type == "file" and "file_path" not in dev.options:
            problems.append(
                Problem(("audit", "devices", i, "options", "file_path"),
                        "required key is missing for a file audit device")
            )
    for name in sorted(_duplicates(d.path for d in devices)):
        problems.append(Problem(("audit", "devices"), f"duplicate audit path {describe(name)}"))
    for name in sorted(_duplicates(k.name for k in spec.jwt_issuer_keys)):
        problems.append(Problem(("jwt_issuer_keys",), f"duplicate key name {describe(name)}"))
    problems.extend(_static_secret_problems(spec, policy_dir))
    return problems


def _policy_reader(policy_dir: Path) -> Callable[[Service, str], bool]:
    """Return ``can_read(service, api_path)``: whether the service's policies grant read there."""
    from kernel.policy_files import PolicyParseError, allows, parse_policy

    parsed: dict[str, dict[str, frozenset[str]]] = {}

    def can_read(svc: Service, api_path: str) -> bool:
        readable = False
        for policy in svc.policies:
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
    database: DatabaseEngine | None, services: Mapping[str, Service],
    can_read: Callable[[Service, str], bool],
) -> list[Problem]:
    """Consumers of a database static role must exist and be able to read its credentials."""
    problems: list[Problem] = []
    if database is None:
        return problems
    for i, role in enumerate(database.static_roles):
        creds_path = static_creds_path(database.mount, role.name)
        for j, consumer in enumerate(role.consumers):
            where: KeyPath = ("database", "static_roles", i, "consumers", j)
            if consumer not in services:
                problems.append(Problem(where, f"unknown service {describe(consumer)}"))
            elif not can_read(services[consumer], creds_path):
                problems.append(Problem(
                    where, f"service {describe(consumer)} cannot read {creds_path} with policies "
                    f"{list(services[consumer].policies)}"))
    return problems


def _static_secret_problems(spec: EnvironmentSpec, policy_dir: Path) -> list[Problem]:
    problems: list[Problem] = []
    kv_mounts = {m.path for m in spec.kv_mounts}
    services = {s.name: s for s in spec.services}
    env = spec.environment
    can_read = _policy_reader(policy_dir)
    problems.extend(_static_role_problems(spec.database, services, can_read))
    for i, secret in enumerate(spec.static_secrets):
        where: KeyPath = ("static_secrets", i)
        if secret.mount not in kv_mounts:
            problems.append(Problem((*where, "mount"),
                                    f"{describe(secret.mount)} is not a kv_mounts path"))
        problems.extend(_source_problems(secret, where, env))
        replaced = secret.cas  # version N+1 replaces N: a rollback restores an M below N
        if secret.restores is not None and replaced is not None and secret.restores >= replaced:
            problems.append(Problem((*where, "restores"), f"restores {secret.restores} must be "
                                    f"lower than {replaced}, the version this rollback replaces"))
        problems.extend(_lifecycle_problems(secret, where))
        for j, consumer in enumerate(secret.consumers):
            svc = services.get(consumer)
            if svc is None:
                problems.append(Problem((*where, "consumers", j),
                                        f"unknown service {describe(consumer)}"))
                continue
            if not can_read(svc, secret.data_path):
                problems.append(Problem(
                    (*where, "consumers", j),
                    f"service {describe(consumer)} cannot read {secret.data_path} with policies "
                    f"[{', '.join(describe(p) for p in svc.policies)}]"))
    consumers = {c for s in spec.static_secrets for c in s.consumers}
    consumers |= {c for r in (() if spec.database is None else spec.database.static_roles)
                  for c in r.consumers}
    for i, svc in enumerate(spec.services):
        needs = svc.name in consumers or bool(svc.database_roles)
        if needs and svc.kubernetes is None and svc.outside_cluster is None:
            problems.append(Problem(
                ("services", i), f"service {describe(svc.name)} consumes secrets but has "
                "neither kubernetes (Vault Secrets Operator) nor outside_cluster "
                "(secrets-issue-dynamic)"))
        if svc.kubernetes is not None and spec.delivery is None:
            problems.append(Problem(("services", i, "kubernetes"), "a Kubernetes service needs "
                                    "delivery.kubernetes (a context or a render_dir)"))
    for name in sorted(_duplicates(s.id for s in spec.static_secrets)):
        problems.append(Problem(("static_secrets",), f"secret {describe(name)} is declared twice"))
    return problems


def _source_problems(secret: StaticSecret, where: KeyPath, env: str) -> list[Problem]:
    """Check the keys that go with where the value comes from (config, generator, mirror)."""
    problems = []
    if secret.declared_source == "generated" and secret.config_secret is not None:
        problems.append(Problem((*where, "config_secret"), "only provided secrets take their "
                                "value from config"))
    if secret.declared_source == "provided":
        if secret.config_secret is None:
            problems.append(Problem((*where, "config_secret"), "required key is missing for a "
                                    "provided secret"))
        if secret.generator is not None:
            problems.append(Problem((*where, "generator"), "only generated secrets have a "
                                    "generator"))
    if secret.mirror_to_dr and env != "prod":
        problems.append(Problem((*where, "mirror_to_dr"), "only prod secrets are mirrored to dr"))
    if secret.mirror_of is not None and env != "dr":
        problems.append(Problem((*where, "mirror_of"), "only the dr stack holds mirrors"))
    return problems


def _lifecycle_problems(secret: StaticSecret, where: KeyPath) -> list[Problem]:
    """Check ``previous`` and ``retired``: each names the version just before ``version``."""
    problems = []
    before = secret.cas  # the version before this one
    marks = [k for k in ("restores", "previous", "retired") if getattr(secret, k) is not None]
    if len(marks) > 1:
        problems.append(Problem((*where, marks[1]), f"{marks[1]} cannot be declared together "
                                f"with {marks[0]} (one edit writes one of them)"))
    for name in ("previous", "retired"):
        value = getattr(secret, name)
        if value is not None and before is not None and value != before:
            problems.append(Problem((*where, name), f"{name} {value} must be {before}, the "
                                    "version before this one"))
    if secret.previous is not None and not secret.keep_previous:
        problems.append(Problem((*where, "previous"), "only a keep_previous: true secret keeps "
                                "a previous value"))
    clash = sorted(set(secret.keys) & {f"{k}{PREVIOUS_SUFFIX}" for k in secret.keys})
    if secret.keep_previous and clash:
        problems.append(Problem((*where, "keys"), f"key {clash[0]} is where keep_previous keeps "
                                f"the previous value of {clash[0][:-len(PREVIOUS_SUFFIX)]}"))
    return problems
