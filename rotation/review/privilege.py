"""What each principal gains and loses, asked of the real policy engine, base against head.

A principal is what a token is issued to: each service role (the union of its
policies), each CI role, and each loaded policy no role is bound to (break-
glass and auditor tokens are issued by hand). Both revisions' policy files
are written into a throwaway OpenBao (:mod:`rotation.review.engine`) under
``base-<name>`` and ``head-<name>``; one token per distinct policy set is
created without the ``default`` policy, and ``sys/capabilities`` answers
what it may do on every probe path:

* every path any stack declares at either revision (secret data, metadata,
  delete and destroy paths; mounts and their config; database creds, roles and
  connections; auth methods and their roles; policies; audit devices; issuer
  keys),
* every path in the capability matrix at either revision,
* every path pattern written in a policy file at either revision, with its
  globs (``*``, ``+``) filled in, so a grant on a path no stack names shows.

The engine is the judge: nothing here matches paths against globs. A
principal whose policy set and policy texts are both unchanged cannot have
changed, so it is not asked; when that holds for every principal the engine
is not started at all (the report says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hvac
import requests

from kernel.naming import database_creds_path
from kernel.policy_files import PolicyParseError, parse_policy
from rotation.errors import CheckFailed
from rotation.gates.capabilities import NO_CAPABILITY, capabilities_of
from rotation.review.engine import Engine, throwaway_openbao

SERVICE = "service"
CI_ROLE = "CI role"
POLICY = "policy"
GLOB_FILL = "probe"
TOKEN_TTL = "10m"  # noqa: S105 - a duration, not a token


@dataclass(frozen=True)
class Principal:
    """Who a token is issued to in one stack."""

    stack: str
    kind: str
    name: str

    @property
    def label(self) -> str:
        """Return e.g. ``service execution``."""
        return f"{self.kind} {self.name}"


@dataclass
class PrincipalDiff:
    """What one principal may do at the head that it could not at the base, and the reverse."""

    principal: Principal
    old_policies: tuple[str, ...]
    new_policies: tuple[str, ...]
    gained: dict[str, list[str]] = field(default_factory=dict)
    lost: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"stack": self.principal.stack, "kind": self.principal.kind,
                "name": self.principal.name, "old_policies": list(self.old_policies),
                "new_policies": list(self.new_policies), "gained": self.gained,
                "lost": self.lost}


@dataclass
class PrivilegeReport:
    """Every principal whose capabilities changed, and how the engine was asked."""

    ran: bool = False
    note: str = ""
    paths: int = 0
    tokens: int = 0
    diffs: list[PrincipalDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"engine": "openbao (bao server -dev, throwaway)" if self.ran else None,
                "note": self.note, "probe_paths": self.paths, "tokens": self.tokens,
                "principals": [d.to_json() for d in self.diffs], "errors": self.errors}


def principals(stack: str, spec: Mapping[str, Any] | None) -> dict[Principal, tuple[str, ...]]:
    """Return each principal of a raw spec and its policy set (sorted, unique)."""
    if not spec:
        return {}
    out: dict[Principal, tuple[str, ...]] = {}
    bound: set[str] = set()
    for service in spec.get("services") or []:
        if isinstance(service, Mapping):
            pols = tuple(sorted(set(map(str, service.get("policies") or []))))
            out[Principal(stack, SERVICE, str(service.get("name")))] = pols
            bound.update(pols)
    jwt = (spec.get("auth") or {}).get("jwt") or {}
    for role in jwt.get("roles") or []:
        if isinstance(role, Mapping):
            pols = tuple(sorted(set(map(str, role.get("policies") or []))))
            out[Principal(stack, CI_ROLE, str(role.get("name")))] = pols
            bound.update(pols)
    for name in sorted(set(map(str, spec.get("policies") or [])) - bound):
        out[Principal(stack, POLICY, name)] = (name,)
    return out


def declared_paths(spec: Mapping[str, Any] | None) -> set[str]:  # noqa: PLR0912 - one per section
    """Return the API paths a raw spec declares (what its principals could touch)."""
    if not spec:
        return set()
    found: set[str] = set()
    for secret in spec.get("static_secrets") or []:
        if isinstance(secret, Mapping):
            mount, path = secret.get("mount"), secret.get("path")
            found |= {f"{mount}/{part}/{path}" for part in ("data", "metadata", "delete",
                                                            "destroy")}
    for mount in spec.get("kv_mounts") or []:
        if isinstance(mount, Mapping):
            found |= {f"sys/mounts/{mount.get('path')}", f"{mount.get('path')}/config"}
    database = spec.get("database")
    if isinstance(database, Mapping):
        mount = database.get("mount")
        connection = (database.get("connection") or {}).get("name")
        found |= {f"sys/mounts/{mount}", f"{mount}/config/{connection}",
                  f"{mount}/rotate-root/{connection}"}
        for role in database.get("roles") or []:
            if isinstance(role, Mapping):
                found |= {database_creds_path(str(mount), str(role.get("name"))),
                          f"{mount}/roles/{role.get('name')}"}
    auth = spec.get("auth") or {}
    kubernetes = auth.get("kubernetes")
    if isinstance(kubernetes, Mapping):
        k8s = kubernetes.get("path")
        found |= {f"sys/auth/{k8s}", f"auth/{k8s}/config"}
        found |= {f"auth/{k8s}/role/{s.get('name')}" for s in spec.get("services") or []
                  if isinstance(s, Mapping)}
    jwt = auth.get("jwt")
    if isinstance(jwt, Mapping):
        path = jwt.get("path")
        found |= {f"sys/auth/{path}", f"auth/{path}/config"}
        found |= {f"auth/{path}/role/{r.get('name')}" for r in jwt.get("roles") or []
                  if isinstance(r, Mapping)}
    found |= {f"sys/policies/acl/{name}" for name in spec.get("policies") or []}
    for device in (spec.get("audit") or {}).get("devices") or []:
        if isinstance(device, Mapping):
            found |= {f"sys/audit/{device.get('path')}", f"sys/audit-hash/{device.get('path')}"}
    for key in spec.get("jwt_issuer_keys") or []:
        if isinstance(key, Mapping):
            found |= {f"identity/oidc/key/{key.get('name')}",
                      f"identity/oidc/key/{key.get('name')}/rotate"}
    return found


def expectation_paths(doc: Any) -> set[str]:
    """Return every path the capability matrix (parsed ``expectations.yaml``) names."""
    if not isinstance(doc, Mapping):
        return set()
    found = set(map(str, (doc.get("sudo") or {}).get("probe_paths") or []))
    for body in (doc.get("policies") or {}).values():
        if isinstance(body, Mapping):
            for entry in [*(body.get("allow") or []), *(body.get("deny") or [])]:
                if isinstance(entry, Mapping) and entry.get("path"):
                    found.add(str(entry["path"]))
    return found


def policy_paths(texts: Mapping[str, str]) -> set[str]:
    """Return each policy's path patterns with the globs filled in (``sys/*`` -> ``sys/probe``)."""
    found: set[str] = set()
    for name, text in texts.items():
        try:
            rules = parse_policy(text, f"{name}.hcl")
        except PolicyParseError:
            continue  # the acl-policies check reports it; the engine refuses it below
        for pattern in rules:
            found.add(pattern.replace("+", GLOB_FILL).replace("*", GLOB_FILL).rstrip("/")
                      or GLOB_FILL)
    return found


def _load_policies(client: hvac.Client, rev: str, texts: Mapping[str, str],
                   report: PrivilegeReport) -> set[str]:
    loaded: set[str] = set()
    for name, text in sorted(texts.items()):
        try:
            client.sys.create_or_update_acl_policy(name=f"{rev}-{name}", policy=text)
        except hvac.exceptions.VaultError as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            report.errors.append(f"policies/acl/{name}.hcl at the {rev}: the policy engine "
                                 f"refuses it ({first})")
            continue
        loaded.add(name)
    return loaded


def compute(
    old_specs: Mapping[str, Mapping[str, Any] | None],
    new_specs: Mapping[str, Mapping[str, Any] | None],
    old_policies: Mapping[str, str], new_policies: Mapping[str, str],
    extra_paths: Iterable[str] = (), *, engine: Engine | None = None,
) -> PrivilegeReport:
    """Diff every principal's capabilities between the two revisions on a throwaway OpenBao.

    ``engine`` is one the caller started early (and stops); else one is started here.
    """
    report = PrivilegeReport()
    before: dict[Principal, tuple[str, ...]] = {}
    after: dict[Principal, tuple[str, ...]] = {}
    for stack, spec in old_specs.items():
        before.update(principals(stack, spec))
    for stack, spec in new_specs.items():
        after.update(principals(stack, spec))
    if dict(old_policies) == dict(new_policies) and before == after:
        report.note = ("no policy file and no policy binding changed: every principal's "
                       "capabilities are the base's (the engine was not started)")
        return report
    probes = set(extra_paths) | policy_paths(old_policies) | policy_paths(new_policies)
    for spec in [*old_specs.values(), *new_specs.values()]:
        probes |= declared_paths(spec)
    paths = sorted(probes)
    edited = {name for name in set(old_policies) | set(new_policies)
              if old_policies.get(name) != new_policies.get(name)}
    report.paths = len(paths)
    answers: dict[tuple[str, tuple[str, ...]], dict[str, frozenset[str]]] = {}
    try:
        with throwaway_openbao(engine) as client:
            report.ran = True
            loaded = {"base": _load_policies(client, "base", old_policies, report),
                      "head": _load_policies(client, "head", new_policies, report)}

            def ask(rev: str, policy_set: tuple[str, ...]) -> dict[str, frozenset[str]]:
                key = (rev, policy_set)
                if key not in answers:
                    names = [f"{rev}-{p}" for p in policy_set if p in loaded[rev]]
                    if not names:
                        answers[key] = {p: frozenset() for p in paths}
                    else:
                        created = client.auth.token.create(policies=names,
                                                           no_default_policy=True,
                                                           ttl=TOKEN_TTL, renewable=False)
                        report.tokens += 1
                        raw = capabilities_of(client, str(created["auth"]["client_token"]),
                                              paths)
                        answers[key] = {p: frozenset(raw[p]) - {NO_CAPABILITY} for p in paths}
                return answers[key]

            for principal in sorted(set(before) | set(after),
                                    key=lambda p: (p.stack, p.kind, p.name)):
                old_set, new_set = before.get(principal, ()), after.get(principal, ())
                if old_set == new_set and not set(new_set) & edited:
                    continue  # same policies, same texts: the same answers
                old_caps, new_caps = ask("base", old_set), ask("head", new_set)
                diff = PrincipalDiff(principal, old_set, new_set)
                for path in paths:
                    gained, lost = new_caps[path] - old_caps[path], old_caps[path] - new_caps[path]
                    if gained:
                        diff.gained[path] = sorted(gained)
                    if lost:
                        diff.lost[path] = sorted(lost)
                if diff.gained or diff.lost or old_set != new_set:
                    report.diffs.append(diff)
    except (requests.RequestException, hvac.exceptions.VaultError) as exc:
        report.errors.append(f"cannot compute the capability diff: the throwaway OpenBao "
                             f"failed ({type(exc).__name__})")
    except CheckFailed as exc:  # no bao binary, or it would not start: say so, and fail
        report.errors.append(str(exc) + (f" ({exc.hint})" if exc.hint else ""))
    return report
