"""Rotation plans: what a diff of the stack files will rotate, and what else it touches.

A plan compares each ``Pulumi.<stack>.yaml`` at two revisions (or a revision
and the working tree). A rotation is a credential whose declared version rose
by exactly one: a static secret's ``version``, or for the other classes of
:mod:`infra.spec.credentials` a JWT key's ``version``, the connection's
``root_rotation``, a static role's ``version`` or a role's ``lease_generation``
(the plan says what the apply will do for each). Anything else in the same
diff is flagged so a reviewer sees it:
a version that moved by another amount, a provided secret whose ciphertext
changed without a bump (or a bump without new ciphertext), added or removed
secrets, and any other spec or config change. Values are never read: only
whether a ``secure:`` ciphertext changed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra import paths
from infra.redact import describe
from infra.spec import EnvironmentSpec, SpecError, parse_spec
from infra.spec.credentials import credentials, raw_versions
from infra.spec.stackfile import parse_yaml
from rotation import gitutil
from rotation.errors import BadInput
from rotation.stacks import StackTarget

STACK_GLOB = "Pulumi.*.yaml"


@dataclass
class Rotation:
    """One secret moving from ``old_version`` to ``new_version`` in one stack."""

    stack: str
    secret: str
    data_path: str
    source: str
    old_version: int | None
    new_version: int
    cas: int | None  # KV only: the check-and-set value of the write
    consumers: list[str]
    checks: list[str]
    follows: str | None = None
    restarts: list[str] = field(default_factory=list)
    kind: str = "kv"
    apply: str = ""  # what pulumi up does, in reviewer words
    reload: str = ""  # what the consumers must do


@dataclass
class Finding:
    """Something in the diff that is not a clean rotation."""

    stack: str
    severity: str  # "error" fails the plan; "warning" is shown for review
    message: str


@dataclass
class Plan:
    """The rotations and findings of a diff."""

    base: str
    head: str
    rotations: list[Rotation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        """Findings that fail the plan."""
        return [f for f in self.findings if f.severity == "error"]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form for ``--json``."""
        return {"base": self.base, "head": self.head,
                "rotations": [dict(vars(r)) for r in self.rotations],  # flat: no asdict
                "findings": [dict(vars(f)) for f in self.findings],
                "ok": not self.errors}


def _spec_of(doc: Any) -> dict[str, Any]:
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        spec = doc["config"].get(paths.SPEC_CONFIG_KEY)
        if isinstance(spec, dict):
            return spec
    return {}


def _secrets(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s.get('mount')}/{s.get('path')}": s for s in spec.get("static_secrets") or []
            if isinstance(s, dict)}


def _diff_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    if old == new:  # one C-level comparison settles every unchanged subtree
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out.extend(_diff_paths(old.get(key), new.get(key), f"{prefix}.{key}" if prefix
                                   else str(key)))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out.extend(_diff_paths(a, b, f"{prefix}[{i}]"))
        return out
    return [prefix or "(whole file)"]


def declared_version(text: str, secret_id: str) -> int | None:
    """Return the version ``text`` (a stack file) declares for ``secret_id`` (None if unknown).

    One parse, no validation: for comparing a working tree with a revision.
    """
    try:
        version = _secrets(_spec_of(parse_yaml(text).data)).get(secret_id, {}).get("version")
    except yaml.YAMLError:
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _strip_rotation_fields(doc: Any, config_keys: set[str]) -> Any:
    """Return ``doc`` without what a rotation may change: versions and provided ciphertexts.

    Only the containers on the way to those fields are copied (the rest is
    shared, never mutated): a deep copy of a large document is slow (docs/benchmarks.md).
    """
    if not isinstance(doc, dict):
        return doc
    out: dict[Any, Any] = dict(doc)
    config: dict[Any, Any] = dict(out["config"]) if isinstance(out.get("config"), dict) else {}
    if "config" in out:
        out["config"] = config
    for key in config_keys:
        config.pop(f"tradepulse-vault:{key}", None)
    spec = config.get(paths.SPEC_CONFIG_KEY)
    if isinstance(spec, dict):
        spec = config[paths.SPEC_CONFIG_KEY] = dict(spec)
        secrets = spec.get("static_secrets") or []
        spec["static_secrets"] = sorted(
            ({k: v for k, v in s.items() if k != "version"} for s in secrets
             if isinstance(s, dict)),
            key=lambda s: f"{s.get('mount')}/{s.get('path')}")
        _strip_credential_versions(spec)
    return out


def _without(item: Any, key: str) -> Any:
    return {k: v for k, v in item.items() if k != key} if isinstance(item, dict) else item


def _strip_credential_versions(spec: dict[Any, Any]) -> None:
    """Drop the non-KV version fields (copying only the containers on the way to them)."""
    keys = spec.get("jwt_issuer_keys")
    if isinstance(keys, list):
        spec["jwt_issuer_keys"] = [_without(k, "version") for k in keys]
    database = spec.get("database")
    if not isinstance(database, dict):
        return
    database = spec["database"] = dict(database)
    database["connection"] = _without(database.get("connection"), "root_rotation")
    for name, key in (("static_roles", "version"), ("roles", "lease_generation")):
        items = database.get(name)
        if isinstance(items, list):
            database[name] = [_without(i, key) for i in items]


def workloads(spec: EnvironmentSpec, consumers: list[str]) -> list[str]:
    """Return what restarts when the consumers' secret changes (the blast radius)."""
    out = []
    for service in spec.services:
        if service.name not in consumers:
            continue
        if service.kubernetes is not None:
            w = service.kubernetes.workload
            out.append(f"{service.kubernetes.namespace}/{w.kind}/{w.name}")
        elif service.outside_cluster is not None:
            out.append(f"host {service.outside_cluster.host} (reload by hand)")
    return out


def _checks(stack: str, secret: str, data_path: str, new: int) -> list[str]:
    return [
        f"preflight --stack {stack}: live version of {secret} is {new - 1}, token may write "
        f"{data_path}",
        f"pulumi up --stack {stack}: writes version {new} with cas={new - 1}",
        f"verify --stack {stack}: live version is {new} and the audit log has the write on "
        f"{data_path}",
    ]


def yaml_problem(source: str, exc: yaml.YAMLError) -> str:
    """Return a YAML error as one line naming the file, line and column (never the text)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{source}: {where}{getattr(exc, 'problem', None) or 'not valid YAML'}"


def _parse_both(plan: Plan, stack: str, source: str, old_text: str | None, *, new_text: str,
                root: Path) -> tuple[Any, Any, EnvironmentSpec] | None:
    """Parse both sides of one stack file's change; None (with an error finding) if unusable."""
    try:
        new_doc = parse_yaml(new_text).data
        new_spec = parse_spec(_spec_of(new_doc), source=source, stack=stack,
                              policy_dir=root / "policies" / "acl")
    except yaml.YAMLError as exc:
        plan.findings.append(Finding(stack, "error", f"invalid stack file: "
                                     f"{yaml_problem(source, exc)}"))
        return None
    except SpecError as exc:
        plan.findings.append(Finding(stack, "error", f"invalid stack file: {exc}"))
        return None
    try:
        old_doc = parse_yaml(old_text).data if old_text is not None else {}
    except yaml.YAMLError as exc:  # the base revision itself was broken: compare with nothing
        plan.findings.append(Finding(stack, "warning", f"{source} at {plan.base} is not valid "
                                     f"YAML ({yaml_problem(source, exc)}); every secret is "
                                     "shown as new"))
        old_doc = {}
    return old_doc, new_doc, new_spec


def plan_stack(
    plan: Plan, stack: str, old_text: str | None, new_text: str | None, root: Path
) -> None:
    """Add the rotations and findings of one stack file's change to ``plan``."""
    source = f"Pulumi.{stack}.yaml"
    if new_text is None:
        plan.findings.append(Finding(stack, "warning", f"{source} was deleted"))
        return
    parsed = _parse_both(plan, stack, source, old_text, new_text=new_text, root=root)
    if parsed is None:
        return
    old_doc, new_doc, new_spec = parsed
    old_secrets, new_secrets = _secrets(_spec_of(old_doc)), _secrets(_spec_of(new_doc))
    old_config = old_doc.get("config", {}) if isinstance(old_doc, dict) else {}
    new_config = new_doc.get("config", {})
    config_keys: set[str] = set()
    for secret_id, new in new_secrets.items():
        old = old_secrets.get(secret_id)
        if old is None:
            plan.findings.append(Finding(stack, "warning", f"new secret {secret_id} (first "
                                         "write creates it with cas=0 semantics)"))
            continue
        key = new.get("config_secret")
        cipher_changed = False
        if key:
            config_keys.add(key)
            cipher_changed = (old_config.get(f"tradepulse-vault:{key}")
                              != new_config.get(f"tradepulse-vault:{key}"))
        old_v, new_v = old.get("version"), new.get("version")
        if new_v is None or old_v == new_v:
            if cipher_changed:
                plan.findings.append(Finding(
                    stack, "error", f"{secret_id}: ciphertext of {key} changed without a "
                    "version bump (the new value would never be written)"))
            continue
        if not isinstance(old_v, int) or new_v != old_v + 1:
            plan.findings.append(Finding(
                stack, "error", f"{secret_id}: version moved {describe(old_v)} -> "
                f"{describe(new_v)}; a rotation moves it by exactly +1"))
            continue
        if new.get("source") == "provided" and not cipher_changed:
            plan.findings.append(Finding(
                stack, "error", f"{secret_id}: version bumped but {key} ciphertext unchanged "
                "(bump a provided secret with python -m rotation bump --value-stdin)"))
        data_path = f"{new['mount']}/data/{new['path']}"
        restarts = workloads(new_spec, list(new.get("consumers", [])))
        plan.rotations.append(Rotation(
            stack=stack, secret=secret_id, data_path=data_path, source=str(new.get("source")),
            old_version=old_v, new_version=new_v, cas=new_v - 1,
            consumers=list(new.get("consumers", [])),
            checks=_checks(stack, secret_id, data_path, new_v), restarts=restarts,
            apply=f"writes version {new_v} of {data_path} with cas={new_v - 1}",
            reload="re-read the secret"))
        if new.get("mirror_to_dr"):
            plan.rotations.append(Rotation(
                stack="dr", secret=secret_id, data_path=data_path, source="mirror",
                old_version=old_v, new_version=new_v, cas=new_v - 1,
                consumers=list(new.get("consumers", [])),
                checks=_checks("dr", secret_id, data_path, new_v), follows="prod"))
    _plan_credentials(plan, stack, new_spec, raw_versions(_spec_of(old_doc)))
    for secret_id in sorted(set(old_secrets) - set(new_secrets)):
        plan.findings.append(Finding(stack, "warning", f"secret {secret_id} removed from the "
                                     "spec (Pulumi will delete it)"))
    others = _diff_paths(_strip_rotation_fields(old_doc, config_keys),
                         _strip_rotation_fields(new_doc, config_keys))
    if others:
        shown = ", ".join(others[:8]) + (f" (+{len(others) - 8} more)" if len(others) > 8 else "")
        plan.findings.append(Finding(stack, "warning", f"not a rotation: {shown}"))


def _credential_checks(stack: str, kind: str, cid: str, path: str, new: int) -> list[str]:
    proof = {
        "jwt-key": "the JWKS has a new key id and still holds the previous one",
        "db-root": "the engine still issues credentials (it logs in with the new root password)",
        "db-static-role": "Vault's last rotation of the role is after preflight's reading",
        "db-lease-generation": "no lease of the role older than the apply remains",
    }[kind]
    return [
        f"preflight --stack {stack}: token may write {path}",
        f"pulumi up --stack {stack}: writes {path} once (tradepulse_version={new})",
        f"verify --stack {stack} --secret {cid}: the audit log has that write; {proof}",
    ]


def _plan_credentials(
    plan: Plan, stack: str, new_spec: EnvironmentSpec, old: Mapping[str, tuple[str, object]]
) -> None:
    """Add the JWT key, root credential, static role and lease generation rotations."""
    for cred in credentials(new_spec):
        if cred.kind == "kv":
            continue
        if cred.id not in old:
            plan.findings.append(Finding(stack, "warning", f"new {cred.kind} {cred.id} at "
                                         f"{cred.field} {cred.version} (nothing rotates)"))
            continue
        old_v = old[cred.id][1]
        if old_v == cred.version:
            continue
        if not isinstance(old_v, int) or isinstance(old_v, bool) or cred.version != old_v + 1:
            plan.findings.append(Finding(
                stack, "error", f"{cred.id}: {cred.field} moved {old_v} -> {cred.version}; a "
                "rotation moves it by exactly +1"))
            continue
        restarts = workloads(new_spec, list(cred.consumers))
        plan.rotations.append(Rotation(
            stack=stack, secret=cred.id, data_path=cred.action_path, source=cred.kind,
            old_version=old_v, new_version=cred.version, cas=None,
            consumers=list(cred.consumers),
            checks=_credential_checks(stack, cred.kind, cred.id, cred.action_path, cred.version),
            restarts=restarts, kind=cred.kind, apply=cred.action, reload=cred.reload))


def build_plan(root: Path, base: str, head: str | None) -> Plan:
    """Compare every stack file at ``base`` with ``head`` (None: the working tree)."""
    gitutil.rev_parse(root, base)
    if head is not None:
        gitutil.rev_parse(root, head)
    plan = Plan(base=base, head=head or "working tree")
    names = {p.name for p in root.glob(STACK_GLOB)}
    names |= {n for n in _names_at(root, base)}
    if head is not None:
        names |= set(_names_at(root, head))
    for name in sorted(names):
        if name == "Pulumi.yaml":
            continue
        stack = name[len("Pulumi."):-len(".yaml")]
        try:
            old_text = gitutil.show(root, base, name)
            new_text = _working_text(root / name) if head is None else gitutil.show(root, head,
                                                                                     name)
        except BadInput as exc:  # not text, or not a regular file: said, never a crash
            plan.findings.append(Finding(stack, "error", f"cannot plan {name}: {exc}"))
            continue
        if old_text == new_text:
            continue
        plan_stack(plan, stack, old_text, new_text, root)
    return plan


def _working_text(path: Path) -> str | None:
    """Return a stack file's text in the working tree (None if absent); :class:`BadInput` if odd."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        raise BadInput("a symlink or directory named like a stack file; stack files must be "
                       "regular files")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise BadInput(f"cannot be read ({exc.strerror or type(exc).__name__})") from None


def _names_at(root: Path, rev: str) -> list[str]:
    import subprocess

    out = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", rev],
                         capture_output=True, text=True, check=False, timeout=30)
    return [n for n in out.stdout.splitlines() if n.startswith("Pulumi.") and n.endswith(".yaml")]


def render_markdown(plan: Plan) -> str:
    """Return the plan as a pull-request comment (Markdown)."""
    lines = [f"### Rotation plan ({plan.base} → {plan.head})", ""]
    kv = [r for r in plan.rotations if r.kind == "kv"]
    others = [r for r in plan.rotations if r.kind != "kv"]
    if kv:
        lines += ["| stack | secret | version | CAS | consumers to reload | restarts |",
                  "|---|---|---|---|---|---|"]
        for r in kv:
            note = f" (follows {r.follows})" if r.follows else ""
            lines.append(f"| {r.stack} | `{r.secret}`{note} | {r.old_version} → "
                         f"{r.new_version} | {r.cas} | {', '.join(r.consumers) or '—'} | "
                         f"{', '.join(r.restarts) or '—'} |")
    if others:
        lines += [""] if kv else []
        lines += ["| stack | kind | credential | version | pulumi up will | consumers to reload "
                  "| restarts |", "|---|---|---|---|---|---|---|"]
        for r in others:
            lines.append(f"| {r.stack} | {r.kind} | `{r.secret}` | {r.old_version} → "
                         f"{r.new_version} | {r.apply} | "
                         f"{(', '.join(r.consumers) + ': ') if r.consumers else ''}{r.reload} | "
                         f"{', '.join(r.restarts) or '—'} |")
    if plan.rotations:
        lines += ["", "**Checks that will prove it**", ""]
        for r in plan.rotations:
            lines += [f"- `{r.stack}` `{r.secret}`:"] + [f"  - {c}" for c in r.checks]
    else:
        lines.append("No rotations in this diff.")
    if plan.findings:
        lines += ["", "**Findings**", ""]
        lines += [f"- {'❌' if f.severity == 'error' else '⚠️'} `{f.stack}`: {f.message}"
                  for f in plan.findings]
    return "\n".join(lines) + "\n"


def add_rotated_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--base`` and ``--secret``: how a command learns which secrets were rotated."""
    parser.add_argument("--base", help="revision before the rotation (default: HEAD~1 if it "
                        "exists); its plan names the rotated secrets")
    parser.add_argument("--secret", action="append", default=[],
                        help="a rotated secret id (repeatable; replaces the plan)")


def rotated_secrets(
    root: Path, target: StackTarget, base: str | None, explicit: list[str]
) -> list[str]:
    """Return the KV secrets a rotation of ``target`` writes.

    ``explicit`` (``--secret``) wins; otherwise the plan of ``base`` (default
    ``HEAD~1`` when it exists) against the working tree, for this stack.
    """
    return [cid for cid, kind in _rotated(root, target, base, explicit) if kind == "kv"]


def rotated_credentials(
    root: Path, target: StackTarget, base: str | None, explicit: list[str]
) -> list[str]:
    """Return the non-KV credentials (JWT keys, root, static roles, lease generations) rotated."""
    return [cid for cid, kind in _rotated(root, target, base, explicit) if kind != "kv"]


def _rotated(
    root: Path, target: StackTarget, base: str | None, explicit: list[str]
) -> list[tuple[str, str]]:
    if explicit:
        kinds = {c.id: c.kind for c in credentials(target.spec)}
        kinds |= {s.id: "kv" for s in target.spec.static_secrets}
        unknown = [s for s in explicit if s not in kinds]
        if unknown:
            raise BadInput(f"Pulumi.{target.name}.yaml: unknown secret(s) "
                           f"{', '.join(describe(s) for s in unknown)}")
        return [(s, kinds[s]) for s in explicit]
    if base is None:
        try:
            gitutil.rev_parse(root, "HEAD~1")
        except BadInput:
            return []
        base = "HEAD~1"
    plan = build_plan(root, base, None)
    return [(r.secret, r.kind) for r in plan.rotations if r.stack == target.name]
