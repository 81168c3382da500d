"""The dr stack follows prod: its mirrors exist in prod, and it has all of prod's structure.

Two comparisons of the typed specs of ``Pulumi.prod.yaml`` and
``Pulumi.dr.yaml`` (a CrossGuard policy sees one stack, so this compares the
files):

* :func:`mirror_problems` - every dr secret with ``mirror_of: prod`` exists in
  prod with ``mirror_to_dr: true`` and the same keys (else the dr apply fails
  reading prod's ``dr_mirror`` output), and every prod secret published to dr
  is mirrored there (else dr is behind prod after a rotation).
* :func:`parity_problems` - every KV and database mount, ACL policy, database
  role, auth method, Kubernetes and JWT role and audit device of prod exists in
  dr. JWT role names carry the environment (``ci-rotate-prod`` is
  ``ci-rotate-dr`` in dr), so they are compared with it replaced.
"""

from __future__ import annotations

from kernel.naming import kubernetes_role_name
from kernel.redact import describe
from kernel.spec.model import EnvironmentSpec


def mirror_problems(prod: EnvironmentSpec, dr: EnvironmentSpec) -> list[str]:
    """Return why dr's mirrors and prod's published secrets disagree (empty: they agree)."""
    out: list[str] = []
    prod_secrets = {s.id: s for s in prod.static_secrets}
    dr_secrets = {s.id: s for s in dr.static_secrets}
    for secret in dr.static_secrets:
        if secret.mirror_of is None:
            continue
        source = prod_secrets.get(secret.id)
        if source is None:
            out.append(f"{dr.source}: {secret.id} is mirror_of prod but {prod.source} does not "
                       "declare it")
        elif not source.mirror_to_dr:
            out.append(f"{dr.source}: {secret.id} is mirror_of prod but {prod.source} does not "
                       "publish it (set mirror_to_dr: true there)")
        elif set(source.keys) != set(secret.keys):
            out.append(f"{dr.source}: {secret.id} mirrors keys {sorted(secret.keys)} but prod "
                       f"declares {sorted(source.keys)}")
    for secret in prod.static_secrets:
        if not secret.mirror_to_dr:
            continue
        copy = dr_secrets.get(secret.id)
        if copy is None:
            out.append(f"{prod.source}: {secret.id} is published to dr (mirror_to_dr) but "
                       f"{dr.source} does not mirror it: dr is behind prod")
        elif copy.mirror_of is None:
            out.append(f"{prod.source}: {secret.id} is published to dr but {dr.source} declares "
                       f"its own version {copy.version} instead of mirror_of: prod")
    return out


def _jwt_role_key(name: str, environment: str) -> str:
    suffix = f"-{environment}"
    return name[: -len(suffix)] + "-<env>" if name.endswith(suffix) else name


def structure(spec: EnvironmentSpec) -> dict[str, set[str]]:
    """Return the names dr must share with prod, per kind."""
    kinds: dict[str, set[str]] = {
        "KV mount": {m.path for m in spec.kv_mounts},
        "ACL policy": set(spec.policies),
        "audit device": {d.path for d in spec.audit.devices},
        "Kubernetes role": {kubernetes_role_name(s.name) for s in spec.services
                            if s.kubernetes is not None},
        "auth method": set(),
        "database mount": set(),
        "database role": set(),
        "JWT role": set(),
    }
    if spec.database is not None:
        kinds["database mount"].add(spec.database.mount)
        kinds["database role"] = {r.name for r in spec.database.roles}
    if spec.auth.kubernetes is not None:
        kinds["auth method"].add(f"kubernetes at {spec.auth.kubernetes.path}")
    if spec.auth.jwt is not None:
        kinds["auth method"].add(f"jwt at {spec.auth.jwt.path}")
        kinds["JWT role"] = {_jwt_role_key(r.name, spec.environment) for r in spec.auth.jwt.roles}
    return kinds


def parity_problems(prod: EnvironmentSpec, dr: EnvironmentSpec) -> list[str]:
    """Return every mount, policy, role, auth method and audit device of prod missing in dr."""
    have = structure(dr)
    out = []
    for kind, names in structure(prod).items():
        for name in sorted(names - have[kind]):
            shown = name.replace("-<env>", f"-{dr.environment}")
            out.append(f"{dr.source}: lacks prod's {kind} {describe(shown)}")
    return out
