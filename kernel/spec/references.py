"""The rules that need more than one key of a spec: references, pairs and caps.

Run after the model (:mod:`kernel.spec.model`) has accepted the spec's shape,
on the same data: every policy has an HCL file, every role names a declared
policy, TTLs respect their max and the environment's caps, names are unique,
consumers exist and their policies let them read what they consume, and the
lifecycle marks (``restores``, ``previous``, ``retired``) name the right
versions. Each problem names its key path (:class:`kernel.spec.messages.Problem`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kernel.redact import describe
from kernel.spec.messages import KeyPath, Problem
from kernel.spec.model import PREVIOUS_SUFFIX


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


def reference_problems(  # noqa: PLR0912 - one linear list of cross-checks reads best
    data: Mapping[str, Any], stack: str | None, policy_dir: Path
) -> list[Problem]:
    """Every problem across keys of ``data`` (a spec the model accepted) for ``stack``."""
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
