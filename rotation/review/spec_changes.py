"""Classify what changed in one stack file, field by field, in the words a reviewer reads.

The comparison is of the parsed documents (base and head), section by
section of the spec, with collections matched by name (a service, a role, a
mount, an audit device, a secret) rather than by list position, so moving an
entry is no change and a renamed entry is a removal plus an addition. Each
field has a class (see :mod:`rotation.review.changes`); a field this module
does not know is a ``configuration`` change named by its key path, never
dropped. Declared versions and provided-secret ciphertexts are the
rotation's own fields and are left to :mod:`rotation.planning`.

Only names, numbers, flags and addresses from the spec are shown. Values
under project config keys are never shown (they are ``secure:`` ciphertext
or, if plain, a secret-scan finding); a change there reads "encrypted value
changed".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kernel import paths
from rotation.review.changes import (
    ABSENT,
    CONFIGURATION,
    DESTRUCTIVE,
    PRIVILEGE,
    WEAKENING,
    Change,
    show,
)

# Generator alphabets, weakest first (infra/components/static_secrets.py).
ALPHABET_STRENGTH = {"alphanumeric": 62, "urlsafe": 64, "full": 94}

# Version-like fields of the other credential classes (issue 17): a rotation, judged with
# the static secrets' versions by the plan, never a change here. Absent from specs that do
# not declare them.
CREDENTIAL_VERSIONS: dict[str, tuple[str, ...]] = {
    "jwt_issuer_keys": ("version",), "connection": ("root_rotation",),
    "roles": ("lease_generation",), "static_roles": ("version",),
}

Emit = Callable[..., None]
Rule = Callable[[Any, Any], tuple[str, str, bool]]  # (old, new) -> (kind, why, gain)


def _raised_is(kind: str, why: str) -> Rule:
    """Classify a number: a rise is ``kind`` (a weakening or a privilege gain), a fall is not."""
    def rule(old: Any, new: Any) -> tuple[str, str, bool]:
        if isinstance(old, int) and isinstance(new, int) and new < old:
            return (PRIVILEGE, f"{why}: lowered", False) if kind == PRIVILEGE else (
                CONFIGURATION, "lowered", False)
        return kind, why, True
    return rule


def _lowered_is_weakening(why: str) -> Rule:
    def rule(old: Any, new: Any) -> tuple[str, str, bool]:
        if isinstance(old, int) and isinstance(new, int) and new > old:
            return CONFIGURATION, "raised", False
        return WEAKENING, why, True
    return rule


def _true_to_false_is_weakening(why: str) -> Rule:
    def rule(old: Any, new: Any) -> tuple[str, str, bool]:
        if new is True:
            return CONFIGURATION, "switched on", False
        return WEAKENING, why, True
    return rule


def _always(kind: str, why: str = "", gain: bool = True) -> Rule:
    def rule(old: Any, new: Any) -> tuple[str, str, bool]:
        return kind, why, gain
    return rule


def _grown_is_privilege(why: str) -> Rule:
    """Classify a list: new entries are a privilege gain (audiences, roles, consumers)."""
    def rule(old: Any, new: Any) -> tuple[str, str, bool]:
        added = set(map(str, new or [])) - set(map(str, old or []))
        return PRIVILEGE, why, bool(added)
    return rule


def _delete_after(old: Any, new: Any) -> tuple[str, str, bool]:
    # 0 keeps versions until max_versions pushes them out; a positive value deletes sooner.
    if isinstance(new, int) and new > 0 and (not isinstance(old, int) or old == 0 or new < old):
        return WEAKENING, "versions are deleted sooner: less history to roll back to", True
    return CONFIGURATION, "", False


def _pull_requests(old: Any, new: Any) -> tuple[str, str, bool]:
    if new is True:
        return (WEAKENING, "pull-request runs (code nobody has reviewed yet) can log in as this "
                "role", True)
    return PRIVILEGE, "no longer bound to pull-request runs", False


VAULT_RULES: dict[str, Rule] = {
    "address": _always(WEAKENING, "where the program and operators send their tokens"),
    "flavour": _always(WEAKENING, "decides how audit devices are created and verified"),
    "namespace": _always(WEAKENING, "which Vault namespace is configured"),
    "provider_token_ttl_seconds": _raised_is(PRIVILEGE, "lifetime of the apply token"),
}
LIMIT_RULES: dict[str, Rule] = {
    "max_database_ttl_seconds": _raised_is(WEAKENING, "TTL cap raised"),
    "max_token_ttl_seconds": _raised_is(WEAKENING, "TTL cap raised"),
}
KV_RULES: dict[str, Rule] = {
    "cas_required": _true_to_false_is_weakening(
        "writes no longer need check-and-set: an out-of-band edit can be overwritten"),
    "max_versions": _lowered_is_weakening("fewer versions kept: less history to roll back to"),
    "delete_version_after_seconds": _delete_after,
}
CONNECTION_RULES: dict[str, Rule] = {
    "verify_connection": _true_to_false_is_weakening("the connection is no longer verified"),
}
DB_ROLE_RULES: dict[str, Rule] = {
    "creation_statements": _always(PRIVILEGE, "what the issued database user is granted"),
    "revocation_statements": _always(WEAKENING, "what revoking a lease removes"),
    "default_ttl_seconds": _raised_is(PRIVILEGE, "credential lifetime"),
    "max_ttl_seconds": _raised_is(PRIVILEGE, "credential lifetime"),
}
ISSUER_KEY_RULES: dict[str, Rule] = {
    "algorithm": _always(WEAKENING, "the signing algorithm of issued tokens"),
    "rotation_period_seconds": _raised_is(WEAKENING, "the key is rotated less often"),
    "allowed_client_ids": _grown_is_privilege("who may have tokens signed with this key"),
}
SERVICE_RULES: dict[str, Rule] = {
    # What the policies grant is the per-principal diff's; the binding itself is shown here.
    "policies": _always(PRIVILEGE, "see the capability diff of this service", gain=False),
    "kubernetes.namespace": _always(PRIVILEGE, "who may log in as this service"),
    "kubernetes.service_account": _always(PRIVILEGE, "who may log in as this service"),
    "kubernetes": _always(PRIVILEGE, "who may log in as this service"),
    "kubernetes.workload": _always(CONFIGURATION, "what restarts when its secrets change",
                                   gain=False),
    "outside_cluster.host": _always(PRIVILEGE, "the host that holds this service's credentials"),
    "database_roles": _grown_is_privilege("database credentials this service may issue"),
    "token_ttl_seconds": _raised_is(PRIVILEGE, "token lifetime"),
    "token_max_ttl_seconds": _raised_is(PRIVILEGE, "token lifetime"),
}
K8S_AUTH_RULES: dict[str, Rule] = {
    "path": _always(DESTRUCTIVE, "the auth method is remounted: its roles and logins move"),
    "host": _always(WEAKENING, "the API server Vault asks to review service tokens"),
    "audience": _always(PRIVILEGE, "which service tokens Vault accepts"),
    "ca_cert": _always(WEAKENING, "the CA Vault trusts for the API server"),
}
JWT_AUTH_RULES: dict[str, Rule] = {
    "path": _always(DESTRUCTIVE, "the auth method is remounted: its roles and logins move"),
    "bound_issuer": _always(WEAKENING, "whose signed tokens Vault accepts"),
    "oidc_discovery_url": _always(WEAKENING, "where Vault fetches the issuer's keys"),
    "jwks_url": _always(WEAKENING, "where Vault fetches the issuer's keys"),
    "validation_pubkeys": _always(WEAKENING, "the keys Vault accepts signatures from"),
}
JWT_ROLE_RULES: dict[str, Rule] = {
    "policies": _always(PRIVILEGE, "see the capability diff of this CI role", gain=False),
    "bound_audiences": _grown_is_privilege("which tokens may log in as this role"),
    "repository": _always(PRIVILEGE, "which repository's runs may log in as this role"),
    "branch": _always(PRIVILEGE, "which branch's runs may log in as this role"),
    "pull_requests": _pull_requests,
    "deployment_environment": _always(PRIVILEGE, "which environment's runs may log in"),
    "user_claim": _always(PRIVILEGE, "which claim names the CI identity"),
    "token_ttl_seconds": _raised_is(PRIVILEGE, "token lifetime"),
    "token_max_ttl_seconds": _raised_is(PRIVILEGE, "token lifetime"),
}
SECRET_RULES: dict[str, Rule] = {
    "rotation_interval_seconds": _raised_is(WEAKENING, "rotated less often"),
    "consumers": _grown_is_privilege("who receives this secret"),
}


def _rule_for(rules: Mapping[str, Rule], name: str) -> Rule | None:
    """Return the rule of ``a.b.c``, else of ``a.b``, else of ``a`` (the nearest named)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        rule = rules.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return None


def _flat(item: Any, prefix: str = "") -> dict[str, Any]:
    """Return a mapping's leaves as ``{"a.b": value}`` (lists stay whole values)."""
    if not isinstance(item, Mapping):
        return {prefix: item} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(_flat(value, name))
        else:
            out[name] = value
    return out


def _by(items: Any, key: str) -> dict[str, Any]:
    return {str(i.get(key)): i for i in items or [] if isinstance(i, Mapping)}


class _Classifier:
    """Collects the changes of one stack file."""

    def __init__(self, stack: str, sudo_holders: Iterable[str]) -> None:
        self.stack = stack
        self.sudo_holders = frozenset(sudo_holders)
        self.changes: list[Change] = []

    def emit(self, kind: str, subject: str, field: str, old: object,  # noqa: PLR0917
             new: object, why: str = "", *, gain: bool = True, location: str = "",
             key: str = "", always: bool = False) -> None:
        self.changes.append(Change(kind, self.stack, subject, field, show(old, key=key or field),
                                   show(new, key=key or field), why, gain, location, always))

    def fields(self, subject: str, old: Any, new: Any, rules: Mapping[str, Rule], *,
               location: str, skip: Iterable[str] = (), default: Rule | None = None) -> None:
        """Compare two entries field by field; a field without a rule is ``default``'s.

        Without ``default``, a field no rule names is a configuration change.
        """
        skipped = set(skip)
        flat_old, flat_new = _flat(old), _flat(new)
        for name in sorted(set(flat_old) | set(flat_new)):
            if name in skipped or name.split(".")[0] in skipped:
                continue
            a, b = flat_old.get(name), flat_new.get(name)
            if a == b:
                continue
            rule = _rule_for(rules, name) or default
            kind, why, gain = rule(a, b) if rule else (CONFIGURATION, "", False)
            self.emit(kind, subject, name, a, b, why, gain=gain, location=f"{location}.{name}",
                      key=name)

    def collection(self, label: str, old: Any, new: Any, key: str, *,
                   rules: Mapping[str, Rule], location: str, added: tuple[str, str, bool],
                   removed: tuple[str, str],
                   skip: Iterable[str] = (), default: Rule | None = None) -> None:
        """Compare a list of named entries: additions, removals, then each entry's fields."""
        before, after = _by(old, key), _by(new, key)
        for name in sorted(set(after) - set(before)):
            kind, why, gain = added
            self.emit(kind, f"{label} {name}", "entry", ABSENT, "added", why, gain=gain,
                      location=location)
        for name in sorted(set(before) - set(after)):
            self.emit(removed[0], f"{label} {name}", "entry", "present", "removed", removed[1],
                      location=location)
        for name in sorted(set(before) & set(after)):
            self.fields(f"{label} {name}", before[name], after[name], rules,
                        location=f"{location}[{name}]", skip=skip, default=default)

    def break_glass(self, subject: str, old: Any, new: Any) -> None:
        """Flag a sudo holder (break-glass) bound to a role: a weakening, whatever else it is."""
        gained = (set(map(str, new or [])) - set(map(str, old or []))) & self.sudo_holders
        for name in sorted(gained):
            self.emit(WEAKENING, subject, "policies", old, new,
                      f"{name} (a sudo holder, for named people only) bound to a role",
                      always=True)


def _spec(doc: Any) -> dict[str, Any]:
    config = doc.get("config") if isinstance(doc, Mapping) else None
    spec = config.get(paths.SPEC_CONFIG_KEY) if isinstance(config, Mapping) else None
    return dict(spec) if isinstance(spec, Mapping) else {}


def classify_stack(
    stack: str, old_doc: Any, new_doc: Any, *, rotation_config_keys: Iterable[str] = (),
    sudo_holders: Iterable[str] = (),
) -> list[Change]:
    """Return every change from ``old_doc`` to ``new_doc`` that is not a rotation.

    ``old_doc`` is None for a stack the diff adds, ``new_doc`` None for one it
    removes. ``rotation_config_keys`` are the provided secrets' config keys
    (their ciphertext is judged by the plan with the version). ``sudo_holders``
    are the break-glass policies (the capability matrix's ``sudo.holders``).
    """
    c = _Classifier(stack, sudo_holders)
    if old_doc is None:
        strict = bool(_spec(new_doc).get("strict"))
        c.emit(PRIVILEGE, "stack", "file", ABSENT, f"added (strict: {show(strict)})",
               "a new environment: every principal in it is new, and whether it is held to "
               "the production rules is its own declaration", always=True)
        return c.changes
    if new_doc is None:
        c.emit(DESTRUCTIVE, "stack", "file", "present", "removed",
               "its Vault configuration is no longer managed (pulumi destroy is separate)")
        return c.changes
    old_top = dict(old_doc) if isinstance(old_doc, Mapping) else {}
    new_top = dict(new_doc) if isinstance(new_doc, Mapping) else {}
    for key in sorted((set(old_top) | set(new_top)) - {"config"}):
        if old_top.get(key) == new_top.get(key):
            continue
        if key == "secretsprovider":
            c.emit(WEAKENING, "secrets provider", key, old_top.get(key), new_top.get(key),
                   "the key every secure: value of this stack is encrypted with")
        elif key == "encryptionsalt":
            c.emit(WEAKENING, "secrets provider", key, "(salt)", "(changed)",
                   "the passphrase provider's salt")
        else:
            c.emit(CONFIGURATION, "stack file", key, old_top.get(key), new_top.get(key))
    _config_keys(c, old_top.get("config"), new_top.get("config"), set(rotation_config_keys))
    _spec_sections(c, _spec(old_doc), _spec(new_doc))
    return c.changes


def _config_keys(c: _Classifier, old: Any, new: Any, rotation_keys: set[str]) -> None:
    before = dict(old) if isinstance(old, Mapping) else {}
    after = dict(new) if isinstance(new, Mapping) else {}
    for key in sorted(set(before) | set(after), key=str):
        name = str(key).removeprefix(paths.CONFIG_PREFIX)
        if key == paths.SPEC_CONFIG_KEY or name in rotation_keys:
            continue
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if b is None:
            c.emit(DESTRUCTIVE, f"config {key}", "value", "present", "removed",
                   "the program can no longer read it", location=f"config.{key}")
        else:
            c.emit(CONFIGURATION, f"config {key}", "value", "present" if a is not None else ABSENT,
                   "encrypted value changed" if a is not None else "added (value not shown)",
                   location=f"config.{key}")


def _spec_sections(c: _Classifier, old: dict[str, Any], new: dict[str, Any]) -> None:
    loc = paths.SPEC_CONFIG_KEY
    if old.get("strict") != new.get("strict"):
        if old.get("strict") and not new.get("strict"):
            c.emit(WEAKENING, "environment", "strict", old.get("strict"), new.get("strict"),
                   "no longer held to the production rules", location=f"{loc}.strict")
        else:
            c.emit(CONFIGURATION, "environment", "strict", old.get("strict"), new.get("strict"),
                   "held to the production rules" if new.get("strict") else
                   "declared not held to the production rules", gain=False,
                   location=f"{loc}.strict")
    if old.get("environment") != new.get("environment"):
        c.emit(CONFIGURATION, "environment", "name", old.get("environment"),
               new.get("environment"), location=f"{loc}.environment")
    c.fields("Vault", old.get("vault"), new.get("vault"), VAULT_RULES,
             location=f"{loc}.vault")
    c.fields("limits", old.get("limits"), new.get("limits"), LIMIT_RULES,
             location=f"{loc}.limits")
    c.collection("KV mount", old.get("kv_mounts"), new.get("kv_mounts"), "path",
                 rules=KV_RULES, location=f"{loc}.kv_mounts",
                 added=(CONFIGURATION, "a new secrets engine", False),
                 removed=(DESTRUCTIVE, "the mount and every secret version in it are deleted"))
    _database(c, old.get("database"), new.get("database"), f"{loc}.database")
    c.collection("JWT issuer key", old.get("jwt_issuer_keys"), new.get("jwt_issuer_keys"),
                 "name", rules=ISSUER_KEY_RULES, location=f"{loc}.jwt_issuer_keys",
                 skip=CREDENTIAL_VERSIONS["jwt_issuer_keys"],
                 added=(CONFIGURATION, "", False),
                 removed=(DESTRUCTIVE, "tokens signed with it no longer verify"))
    _policy_list(c, old.get("policies"), new.get("policies"), f"{loc}.policies",
                 strict=bool(new.get("strict")))
    c.collection("service", old.get("services"), new.get("services"), "name",
                 rules=SERVICE_RULES, location=f"{loc}.services",
                 added=(PRIVILEGE, "a new principal", True),
                 removed=(DESTRUCTIVE, "its role is deleted: the service can no longer log in"))
    for name, (a, b) in _pairs(old.get("services"), new.get("services")).items():
        c.break_glass(f"service {name}", a.get("policies"), b.get("policies"))
    auth_old, auth_new = old.get("auth") or {}, new.get("auth") or {}
    _auth(c, "Kubernetes auth", auth_old.get("kubernetes"), auth_new.get("kubernetes"),
          rules=K8S_AUTH_RULES, location=f"{loc}.auth.kubernetes")
    _auth(c, "JWT auth", auth_old.get("jwt"), auth_new.get("jwt"), rules=JWT_AUTH_RULES,
          location=f"{loc}.auth.jwt", skip=("roles",))
    jwt_old, jwt_new = auth_old.get("jwt") or {}, auth_new.get("jwt") or {}
    c.collection("CI role", jwt_old.get("roles"), jwt_new.get("roles"), "name",
                 rules=JWT_ROLE_RULES, location=f"{loc}.auth.jwt.roles",
                 added=(PRIVILEGE, "a new principal", True),
                 removed=(DESTRUCTIVE, "its role is deleted: those pipelines can no longer "
                          "log in"))
    for name, (a, b) in _pairs(jwt_old.get("roles"), jwt_new.get("roles")).items():
        c.break_glass(f"CI role {name}", a.get("policies"), b.get("policies"))
    audit_old, audit_new = old.get("audit") or {}, new.get("audit") or {}
    c.collection("audit device", audit_old.get("devices"), audit_new.get("devices"), "path",
                 rules={"description": _always(CONFIGURATION, "", False)},
                 location=f"{loc}.audit.devices",
                 added=(CONFIGURATION, "one more audit device", False),
                 removed=(WEAKENING, "one audit device fewer"),
                 default=_always(WEAKENING, "what the audit trail records and where"))
    c.collection("audited request header", audit_old.get("request_headers"),
                 audit_new.get("request_headers"), "name",
                 rules={"hmac": _always(WEAKENING, "how the header appears in the audit trail")},
                 location=f"{loc}.audit.request_headers", added=(CONFIGURATION, "", False),
                 removed=(WEAKENING, "no longer recorded in the audit trail"))
    _secrets(c, old.get("static_secrets"), new.get("static_secrets"), f"{loc}.static_secrets")
    c.fields("delivery", old.get("delivery"), new.get("delivery"), {},
             location=f"{loc}.delivery")
    known = {"strict", "environment", "vault", "limits", "kv_mounts", "database",
             "jwt_issuer_keys", "policies", "services", "auth", "audit", "static_secrets",
             "delivery"}
    for key in sorted((set(old) | set(new)) - known):
        if old.get(key) != new.get(key):
            c.emit(CONFIGURATION, "spec", key, old.get(key), new.get(key),
                   location=f"{loc}.{key}")
    for key in sorted((set(auth_old) | set(auth_new)) - {"kubernetes", "jwt"}):
        if auth_old.get(key) != auth_new.get(key):
            c.emit(PRIVILEGE, f"auth method {key}", "entry", show(auth_old.get(key)),
                   show(auth_new.get(key)), "an auth method", location=f"{loc}.auth.{key}")


def _pairs(old: Any, new: Any) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    before, after = _by(old, "name"), _by(new, "name")
    return {name: (dict(before.get(name) or {}), dict(after[name])) for name in after}


def _auth(c: _Classifier, label: str, old: Any, new: Any, *, rules: Mapping[str, Rule],
          location: str, skip: Iterable[str] = ()) -> None:
    if old is None and new is None:
        return
    if old is None:
        c.emit(PRIVILEGE, label, "method", ABSENT, "enabled", "a new way to log in",
               location=location)
    elif new is None:
        c.emit(DESTRUCTIVE, label, "method", "enabled", "removed",
               "the auth method and all its roles are deleted", location=location)
    else:
        c.fields(label, old, new, rules, location=location, skip=skip)


def _database(c: _Classifier, old: Any, new: Any, location: str) -> None:
    if old is None and new is None:
        return
    if old is None or new is None:
        if old is None:
            c.emit(CONFIGURATION, "database engine", "mount", ABSENT, new.get("mount"),
                   "a new secrets engine", gain=False, location=location)
        else:
            c.emit(DESTRUCTIVE, "database engine", "mount", old.get("mount"), "removed",
                   "the engine, its roles and every lease are deleted", location=location)
        return
    if old.get("mount") != new.get("mount"):
        c.emit(DESTRUCTIVE, "database engine", "mount", old.get("mount"), new.get("mount"),
               "remounted: every lease and role path changes", location=f"{location}.mount")
    c.fields("database connection", old.get("connection"), new.get("connection"),
             CONNECTION_RULES, location=f"{location}.connection",
             skip=CREDENTIAL_VERSIONS["connection"])
    c.collection("database role", old.get("roles"), new.get("roles"), "name",
                 rules=DB_ROLE_RULES, location=f"{location}.roles",
                 skip=CREDENTIAL_VERSIONS["roles"],
                 added=(PRIVILEGE, "a new kind of database credential",
                                             True),
                 removed=(DESTRUCTIVE, "the role is deleted: its leases can no longer be "
                          "issued"))
    c.collection("database static role", old.get("static_roles"), new.get("static_roles"),
                 "name", rules=DB_ROLE_RULES, location=f"{location}.static_roles",
                 added=(PRIVILEGE, "a new managed database user", True),
                 removed=(DESTRUCTIVE, "Vault stops managing the database user"),
                 skip=CREDENTIAL_VERSIONS["static_roles"])
    known = {"mount", "connection", "roles", "static_roles"}
    extra = {k: v for k, v in old.items() if k not in known}
    extra_new = {k: v for k, v in new.items() if k not in known}
    c.fields("database engine", extra, extra_new, {}, location=location)


def _policy_list(c: _Classifier, old: Any, new: Any, location: str, *, strict: bool) -> None:
    before, after = set(map(str, old or [])), set(map(str, new or []))
    for name in sorted(after - before):
        if name in c.sudo_holders:
            c.emit(WEAKENING, f"policy {name}", "loaded", ABSENT, "loaded",
                   "a sudo holder (break-glass) declared in this environment"
                   + ("" if strict else ", which is not held to the production rules"),
                   location=location, always=not strict)
        else:
            c.emit(PRIVILEGE, f"policy {name}", "loaded", ABSENT, "loaded",
                   "who holds it is in the capability diff", gain=False, location=location)
    for name in sorted(before - after):
        c.emit(DESTRUCTIVE, f"policy {name}", "loaded", "loaded", "removed",
               "the policy is deleted from Vault: tokens holding it lose it", location=location)


def _secrets(c: _Classifier, old: Any, new: Any, location: str) -> None:
    def key(s: Mapping[str, Any]) -> str:
        return f"{s.get('mount')}/{s.get('path')}"

    before = {key(s): s for s in old or [] if isinstance(s, Mapping)}
    after = {key(s): s for s in new or [] if isinstance(s, Mapping)}
    added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    for secret_id in removed:
        twin = next((a for a in added if after[a].get("keys") == before[secret_id].get("keys")
                     and after[a].get("consumers") == before[secret_id].get("consumers")), None)
        why = (f"renamed to {twin}: the path restarts at version 1 and the old path's versions "
               "are deleted" if twin else "Pulumi deletes it and its version history")
        c.emit(DESTRUCTIVE, f"secret {secret_id}", "entry", "present", "removed", why,
               location=location)
    for secret_id in added:
        c.emit(CONFIGURATION, f"secret {secret_id}", "entry", ABSENT, "added",
               "the first write creates it", gain=False, location=location)
    for secret_id in sorted(set(before) & set(after)):
        a, b = before[secret_id], after[secret_id]
        subject = f"secret {secret_id}"
        if a.get("source") != b.get("source"):
            weaker = a.get("source") == "generated"
            c.emit(WEAKENING if weaker else CONFIGURATION, subject, "source", a.get("source"),
                   b.get("source"), "a person chooses the value instead of the generator"
                   if weaker else "", gain=weaker, location=f"{location}[{secret_id}].source")
        _generator(c, subject, a.get("generator"), b.get("generator"),
                   f"{location}[{secret_id}].generator")
        c.fields(subject, a, b, SECRET_RULES, location=f"{location}[{secret_id}]",
                 skip=("version", "restores", "previous", "retired", "source", "generator",
                       "mount", "path"))


def _generator(c: _Classifier, subject: str, old: Any, new: Any, location: str) -> None:
    a = dict(old) if isinstance(old, Mapping) else {}
    b = dict(new) if isinstance(new, Mapping) else {}
    if a == b:
        return
    if not b:
        c.emit(CONFIGURATION, subject, "generator", show(a), ABSENT, gain=False,
               location=location)
        return
    weaker = (isinstance(a.get("length"), int) and isinstance(b.get("length"), int)
              and b["length"] < a["length"]) or (
        ALPHABET_STRENGTH.get(str(b.get("alphabet")), 0)
        < ALPHABET_STRENGTH.get(str(a.get("alphabet")), 0))
    c.emit(WEAKENING if weaker else CONFIGURATION, subject, "generator", show(a) if a else ABSENT,
           show(b), "fewer random bits in each new value" if weaker else "", gain=weaker,
           location=location)
