"""Rotation plans: what a pull request rotates, and every other change it makes, classified.

A plan compares the head with the merge base of ``--base`` and the head
(three-dot: what the branch changed, not how far main has moved since). A
rotation is a credential whose declared version rose by exactly one, written
as a canonical integer: a static secret's ``version``, or for the other classes of
:mod:`kernel.spec.credentials` a JWT key's ``version``, the connection's
``root_rotation``, a static role's ``version`` or a role's ``lease_generation``
(the plan says what the apply will do for each); for a provided secret its
``secure:`` ciphertext must change with it and must not be one the file held
before (a replay). Every other change is classified (:mod:`rotation.review`): configuration,
privilege, weakening or destructive, shown as old -> new with the
environment, the principal or object and the field. What each principal
gains or loses is asked of a throwaway OpenBao when ``privilege=True``.
The rules (:mod:`rotation.review.rules`) turn unacknowledged risk in strict
stacks, and rotations mixed with other changes, into errors. Values are
never read: only whether a ``secure:`` ciphertext changed.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from kernel import paths, targets
from kernel.redact import describe
from kernel.spec import EnvironmentSpec, SpecError, parse_spec
from kernel.spec.credentials import Credential, credentials, raw_versions
from kernel.spec.loader import refuse_duplicate_keys
from kernel.spec.model import StaticSecret
from kernel.spec.stackfile import YamlDocument, collector_paused, parse_yaml
from kernel.spec.versions import version_literal_problems
from rotation import gitutil
from rotation.errors import BadInput
from rotation.review import file_changes, privilege, rules
from rotation.review.changes import KINDS, REPOSITORY, Change
from rotation.review.engine import Engine
from rotation.review.spec_changes import classify_stack
from rotation.stackedit import (
    LIFECYCLE_FIELDS,
    credential_comment,
    parse_rotation_comment,
    version_comment,
)
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
    reason: str | None = None
    ticket: str | None = None
    restores: int | None = None  # a rollback: the earlier KV version whose data is written
    previous: int | None = None  # keep_previous: the version kept as <KEY>_PREVIOUS
    retired: int | None = None  # retire: the version whose keys are rewritten without previous
    # The URNs the apply changes (kernel.targets): what a targeted `pulumi up` names.
    resources: list[str] = field(default_factory=list)


@dataclass
class Finding:
    """Something in the diff that fails the plan (``error``) or is shown (``warning``)."""

    stack: str
    severity: str  # "error" fails the plan; "warning" is shown for review
    message: str


@dataclass
class Plan:
    """The rotations, classified changes, capability diff and findings of a diff."""

    base: str
    head: str
    merge_base: str = ""
    rotations: list[Rotation] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    privilege: privilege.PrivilegeReport = field(default_factory=privilege.PrivilegeReport)
    other_files: list[str] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    strict: dict[str, bool] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        """Findings that fail the plan."""
        return [f for f in self.findings if f.severity == "error"]

    def targeted_applies(self) -> dict[str, dict[str, Any]]:
        """Per stack that rotates: the URNs its targeted apply names, and how it applies them.

        ``rotation_only``: every rotation is a generated or provided KV secret's,
        so the program may register only those secrets
        (:func:`kernel.targets.rotation_only_secrets`, which the program itself
        applies to the same URNs) and ``--target-dependents`` must not be passed.
        """
        out: dict[str, dict[str, Any]] = {}
        for stack in dict.fromkeys(r.stack for r in self.rotations):
            mine = [r for r in self.rotations if r.stack == stack]
            out[stack] = {
                "targets": sorted({u for r in mine for u in r.resources}),
                "rotation_only": all(r.kind == "kv" and r.source in targets.ROTATION_ONLY_SOURCES
                                     for r in mine),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-able form for ``--json``."""
        return {"base": self.base, "head": self.head, "merge_base": self.merge_base,
                "rotations": [dict(vars(r)) for r in self.rotations],  # flat: no asdict
                "changes": [c.to_json() for c in self.changes],
                "privilege": self.privilege.to_json(),
                "findings": [dict(vars(f)) for f in self.findings],
                "restarts": restart_plan(self.rotations),
                "targeted_apply": self.targeted_applies(),
                "other_files": self.other_files, "acknowledged": self.acknowledged,
                "strict_stacks": sorted(s for s, v in self.strict.items() if v),
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


def declared_version(text: str, secret_id: str) -> int | None:
    """Return the version ``text`` (a stack file) declares for ``secret_id`` (None if unknown).

    One parse, no validation: for comparing a working tree with a revision.
    """
    try:
        version = _secrets(_spec_of(parse_yaml(text).data)).get(secret_id, {}).get("version")
    except yaml.YAMLError:
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def _ciphertext(value: Any) -> str | None:
    """Return the ``secure:`` string of a config value (None if it is not one)."""
    if isinstance(value, dict) and isinstance(value.get("secure"), str):
        return str(value["secure"])
    return None


def workloads(spec: EnvironmentSpec, consumers: list[str]) -> list[str]:
    """Return what restarts when the consumers' secret changes (the blast radius)."""
    out = []
    for service in spec.services_named(consumers):
        if service.kubernetes is not None:
            w = service.kubernetes.workload
            out.append(f"{service.kubernetes.namespace}/{w.kind}/{w.name}")
        elif service.outside_cluster is not None:
            out.append(f"host {service.outside_cluster.host} (reload by hand)")
    return out


def _checks(stack: str, secret: str, data_path: str, new: int,
            restores: int | None = None, *, follows: str | None = None) -> list[str]:
    if restores is not None and follows is not None:
        # A mirror writes its origin's restored data (the origin's dr_mirror output), not
        # data from its own history; its own version `restores` is what verify compares with.
        return [
            f"preflight --stack {stack}: live version of {secret} is {new - 1}, version "
            f"{restores} is still in its history (verify compares with it), token may read "
            f"and write {data_path}",
            f"pulumi up --stack {stack} (after {follows}): writes {follows}'s restored data "
            f"(version {restores}'s) as version {new} with cas={new - 1}",
            f"verify --stack {stack}: live version is {new}, its data has the digest of version "
            f"{restores}'s data in {stack}, and the audit log has the write on {data_path}",
        ]
    if restores is not None:
        return [
            f"preflight --stack {stack}: live version of {secret} is {new - 1}, version "
            f"{restores} is still in its history (not deleted, destroyed or pushed out by "
            f"max_versions), token may read and write {data_path}",
            f"pulumi up --stack {stack}: reads version {restores} from Vault's history and "
            f"writes it as version {new} with cas={new - 1}",
            f"verify --stack {stack}: live version is {new}, its data has the digest of version "
            f"{restores}'s data, and the audit log has the write on {data_path}",
        ]
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


def _reason(trees: tuple[YamlDocument | None, YamlDocument | None], secret: str | Credential,
            source: str) -> tuple[str | None, str | None]:
    """Return the reason and ticket ``bump`` wrote on the version line in this diff.

    ``trees`` are the stack file before and after, parsed once per plan (None: absent,
    not YAML or with a key given twice, so no comment is read from it).
    """
    old_tree, new_tree = trees
    if new_tree is None:
        return None, None

    def comment(tree: YamlDocument | None) -> str | None:
        if tree is None:
            return None
        if isinstance(secret, str):
            return version_comment(tree, secret, source)
        return credential_comment(tree, secret, source)

    try:
        before, after = comment(old_tree), comment(new_tree)
    except BadInput:
        return None, None
    return parse_rotation_comment(after) if after != before else (None, None)


@dataclass
class StackDiff:
    """One stack file at both ends of the diff: texts, node trees and data, from one parse."""

    stack: str
    old_text: str | None
    new_text: str | None
    old_tree: YamlDocument | None = None
    new_tree: YamlDocument | None = None

    @property
    def old_doc(self) -> Any:
        """The data of the file before (None: absent or not YAML)."""
        return None if self.old_tree is None else self.old_tree.data

    @property
    def new_doc(self) -> Any:
        """The data of the file after (None: absent or not YAML)."""
        return None if self.new_tree is None else self.new_tree.data

    @cached_property
    def duplicate_keys(self) -> tuple[SpecError | None, SpecError | None]:
        """Each side's keys given twice, as the loader refuses them (None: none, or no tree)."""
        def refused(tree: YamlDocument | None) -> SpecError | None:
            if tree is None:
                return None
            try:
                refuse_duplicate_keys(tree, f"Pulumi.{self.stack}.yaml")
            except SpecError as exc:
                return exc
            return None
        return refused(self.old_tree), refused(self.new_tree)

    @property
    def comment_trees(self) -> tuple[YamlDocument | None, YamlDocument | None]:
        """Both trees, as the version-line comments are read from them.

        A tree with a key given twice is left out (which value bump edited is unknowable).
        """
        old, new = self.duplicate_keys
        return (self.old_tree if old is None else None, self.new_tree if new is None else None)


def plan_stack(
    plan: Plan, diff: StackDiff, root: Path, *, history_rev: str | None = None,
    sudo_holders: frozenset[str] = frozenset(),
) -> None:
    """Add the rotations, changes and findings of one stack file's change to ``plan``.

    ``history_rev`` is where the file's history is searched for replayed
    ciphertexts (the merge base); None skips the search.
    """
    stack, old_text, new_text = diff.stack, diff.old_text, diff.new_text
    source = f"Pulumi.{stack}.yaml"
    if new_text is None:
        plan.changes.extend(classify_stack(stack, diff.old_doc, None))
        return
    problems = version_literal_problems(
        new_text, source, root=None if diff.new_tree is None else diff.new_tree.root)
    if problems:
        plan.findings.extend(Finding(stack, "error", p) for p in problems)
        return
    duplicates = diff.duplicate_keys[1]
    if duplicates is not None:  # the loader, bump and the gate refuse the file: so does plan
        plan.findings.append(Finding(stack, "error", f"invalid stack file: {duplicates}"))
        return
    try:
        new_doc = diff.new_doc if diff.new_doc is not None else _load(new_text)
        new_spec = parse_spec(_spec_of(new_doc), source=source, stack=stack,
                              policy_dir=paths.policy_dir(root))
    except yaml.YAMLError as exc:
        plan.findings.append(Finding(stack, "error", f"invalid stack file: "
                                     f"{yaml_problem(source, exc)}"))
        return
    except SpecError as exc:
        plan.findings.append(Finding(stack, "error", f"invalid stack file: {exc}"))
        return
    old_doc = diff.old_doc if old_text is not None else None
    if old_text is not None and old_doc is None:  # the base itself was broken
        try:
            _load(old_text)
        except yaml.YAMLError as exc:
            plan.findings.append(Finding(stack, "warning", f"{source} at {plan.base} is not "
                                         f"valid YAML ({yaml_problem(source, exc)}); every "
                                         "secret is shown as new"))
        old_doc = {}
    old_spec_doc = old_doc if old_doc is not None else {}
    # The base may not be a valid spec (that is what some pull requests fix): it is read raw.
    old_secrets = _secrets(_spec_of(old_spec_doc))
    old_config = old_spec_doc.get("config", {}) if isinstance(old_spec_doc, dict) else {}
    new_config = new_doc.get("config", {})
    config_keys: set[str] = set()
    for new in new_spec.static_secrets:
        old = old_secrets.get(new.id)
        if old is None:
            continue  # classified with the other changes (a new secret)
        _plan_secret(plan, diff, root, new_spec, new, old, (old_config, new_config), config_keys,
                     history_rev=history_rev)
    _plan_credentials(plan, stack, new_spec, raw_versions(_spec_of(old_spec_doc)),
                      diff.comment_trees)
    plan.changes.extend(classify_stack(stack, old_doc, new_doc, rotation_config_keys=config_keys,
                                       sudo_holders=sudo_holders))


def _plan_secret(  # noqa: PLR0912, PLR0917 - the rotation rules of one secret, in order
    plan: Plan, diff: StackDiff, root: Path, spec: EnvironmentSpec, new: StaticSecret,
    old: Mapping[str, Any], configs: tuple[Mapping[str, Any], Mapping[str, Any]],
    config_keys: set[str], *, history_rev: str | None,
) -> None:
    """Add the rotation of one KV secret declared at both ends of the diff, or why it fails.

    ``new`` is the head's typed secret; ``old`` the base's raw mapping (the base
    may not be a valid spec). ``config_keys`` collects the config secrets that
    rotate, which the classification then leaves out.
    """
    stack, source, secret_id, key = diff.stack, f"Pulumi.{diff.stack}.yaml", new.id, None
    cipher_changed, new_cipher = False, None
    if new.config_secret is not None:
        key = new.config_secret
        config_keys.add(key)
        old_value, new_value = (c.get(paths.config_key(key)) for c in configs)
        cipher_changed = old_value != new_value
        new_cipher = _ciphertext(new_value)
    old_v, new_v = old.get("version"), new.version
    restores, retired, kept = new.restores, new.retired, new.previous
    moved = [f for f in LIFECYCLE_FIELDS if getattr(new, f) != old.get(f)]

    def error(message: str) -> None:
        plan.findings.append(Finding(stack, "error", f"{secret_id}: {message}"))

    if new_v is None or old_v == new_v:
        if moved:
            error(f"{moved[0]} changed without a version bump (bump, rollback and retire write "
                  "it together with version +1)")
        elif cipher_changed:
            error(f"ciphertext of {key} changed without a version bump (the new value would "
                  "never be written)")
        return
    if not isinstance(old_v, int) or isinstance(old_v, bool) or new_v != old_v + 1:
        error(f"version moved {describe(old_v)} -> {describe(new_v)}; a rotation moves it by "
              "exactly +1")
        return
    if old.get("previous") is not None and restores is None and retired is None:
        error(f"a second rotation while version {old.get('previous')}'s value is still kept as "
              "<KEY>_PREVIOUS would drop the value a consumer may still use; retire it first "
              "(python -m rotation retire)")
        return
    if retired is not None and (old.get("previous") is None or retired != old_v):
        error(f"retired {describe(retired)}: a retire rewrites version {old_v} without the "
              "previous value it keeps (previous: beside it)")
        return
    if restores is not None and restores >= old_v:
        error(f"restores {describe(restores)}: a rollback restores a version older than "
              f"{old_v}, the one it replaces")
        return
    if new.from_history is not None:
        if cipher_changed:
            error(f"this version's data is read from Vault's history (rollback or retire); the "
                  f"ciphertext of {key} must not change with it")
    elif new.source == "provided" and not cipher_changed:
        error(f"version bumped but {key} ciphertext unchanged (bump a provided secret with "
              "python -m rotation bump --value-stdin)")
    elif new_cipher is not None and history_rev is not None:
        seen = gitutil.log_contains(root, history_rev, source, new_cipher)
        if seen:
            error(f"the new ciphertext of {key} is one {source} already held (commit "
                  f"{seen[-1][:12]}): a replay of an old value, not a rotation; bump it again "
                  "with a new value")
    reason, ticket = _reason(diff.comment_trees, secret_id, source)
    apply = f"writes version {new_v} of {new.data_path} with cas={new.cas}"
    if restores is not None:
        apply += f", with the data of version {restores} read from Vault's history"
    elif retired is not None:
        apply += (f", with version {retired}'s keys read from Vault's history and without "
                  f"the previous value (<KEY>_PREVIOUS) it kept")
    elif kept is not None:
        apply += f", keeping version {kept}'s value as <KEY>_PREVIOUS until retire"
    plan.rotations.append(Rotation(
        stack=stack, secret=secret_id, data_path=new.data_path, source=new.source,
        old_version=old_v, new_version=new_v, cas=new.cas, consumers=list(new.consumers),
        checks=_checks(stack, secret_id, new.data_path, new_v, restores),
        restarts=workloads(spec, list(new.consumers)), apply=apply,
        reload="re-read the secret", reason=reason, ticket=ticket, restores=restores,
        previous=kept, retired=retired,
        resources=targets.rotation_urns(spec, stack, "kv", secret_id)))
    if new.mirror_to_dr:
        # dr takes prod's (restored) data through the StackReference: not its own history.
        # A rollback is dr's too: its version N+1 then holds what its version M holds.
        plan.rotations.append(Rotation(
            stack="dr", secret=secret_id, data_path=new.data_path, source="mirror",
            old_version=old_v, new_version=new_v, cas=new.cas, consumers=list(new.consumers),
            checks=_checks("dr", secret_id, new.data_path, new_v, restores, follows="prod"),
            follows="prod", reason=reason, ticket=ticket, restores=restores,
            resources=targets.mirror_urns("dr", new.mount, new.path)))


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
    plan: Plan, stack: str, new_spec: EnvironmentSpec, old: Mapping[str, tuple[str, object]],
    trees: tuple[YamlDocument | None, YamlDocument | None],
) -> None:
    """Add the JWT key, root credential, static role and lease generation rotations.

    ``trees`` (the stack file before and after, parsed once) give the reason and ticket
    ``bump`` wrote on the version line, as for KV secrets.
    """
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
        reason, ticket = _reason(trees, cred, f"Pulumi.{stack}.yaml")
        plan.rotations.append(Rotation(
            stack=stack, secret=cred.id, data_path=cred.action_path, source=cred.kind,
            old_version=old_v, new_version=cred.version, cas=None,
            consumers=list(cred.consumers),
            checks=_credential_checks(stack, cred.kind, cred.id, cred.action_path, cred.version),
            restarts=restarts, kind=cred.kind, apply=cred.action, reload=cred.reload,
            reason=reason, ticket=ticket,
            resources=targets.rotation_urns(new_spec, stack, cred.kind, cred.id)))


def _load(text: str) -> Any:
    """Parse YAML text once (the kernel's parse); raises ``yaml.YAMLError``."""
    return parse_yaml(text).data


def _parse_tree(text: str | None) -> YamlDocument | None:
    """Parse ``text`` once (None when absent or not YAML)."""
    if text is None:
        return None
    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return None


def _parse(text: str | None) -> Any:
    tree = _parse_tree(text)
    return None if tree is None else tree.data


def _policy_texts(root: Path, rev: str | None) -> dict[str, str]:
    folder = file_changes.POLICY_DIR.rstrip("/")
    if rev is None:
        return {p.stem: p.read_text(encoding="utf-8", errors="replace")
                for p in sorted((root / folder).glob("*.hcl")) if p.is_file()}
    out: dict[str, str] = {}
    names = [n for n in gitutil.ls_tree(root, rev, folder) if n.endswith(".hcl")]
    for name, content in gitutil.show_many(root, rev, names).items():
        if content is None:
            continue
        try:
            out[Path(name).stem] = content.decode("utf-8")
        except UnicodeDecodeError:
            continue  # not UTF-8: acl-policies reports it; the engine never sees it
    return out


@collector_paused()  # two large trees stay alive throughout: collections would rescan them
def build_plan(
    root: Path, base: str, head: str | None, *,
    acknowledge: frozenset[str] = frozenset(), with_privilege: bool = False,
    engine: Engine | None = None,
) -> Plan:
    """Compare the merge base of ``base`` and ``head`` with ``head`` (None: the working tree).

    ``with_privilege`` computes the capability diff on a throwaway OpenBao (the
    gate and ``plan`` do; commands that only need the rotated secrets do not),
    ``engine`` if the caller started one.
    """
    start = gitutil.merge_base(root, base, head or "HEAD")
    plan = Plan(base=base, head=head or "working tree", merge_base=start,
                acknowledged=sorted(acknowledge))
    changed = gitutil.changed_files(root, start, head)

    def read_new(name: str) -> str | None:
        return gitutil.show(root, head, name) if head is not None else _working_text(root / name)

    def read_old(name: str) -> str | None:
        return gitutil.show(root, start, name)

    old_names = {n for n in gitutil.ls_tree(root, start) if file_changes.is_stack_file(n)}
    new_names = ({n for n in gitutil.ls_tree(root, head) if file_changes.is_stack_file(n)}
                 if head is not None else
                 {p.name for p in root.glob(STACK_GLOB) if file_changes.is_stack_file(p.name)})
    expectations_old = expectations_new = None
    try:
        expectations_old = _parse(read_old(file_changes.EXPECTATIONS))
        expectations_new = _parse(read_new(file_changes.EXPECTATIONS))
    except BadInput as exc:
        plan.findings.append(Finding(REPOSITORY, "error", str(exc)))
    sudo_holders: set[str] = set()
    for doc in (expectations_old, expectations_new):
        if isinstance(doc, dict) and isinstance(doc.get("sudo"), dict):
            sudo_holders |= set(map(str, doc["sudo"].get("holders") or []))
    diffs: dict[str, StackDiff] = {}
    for name in sorted(old_names | new_names):
        stack = name[len("Pulumi."):-len(".yaml")]
        try:
            old_text = read_old(name) if name in old_names else None
            new_text = read_new(name) if name in new_names else None
        except BadInput as exc:  # not text, or not a regular file: said, never a crash
            plan.findings.append(Finding(stack, "error", f"cannot plan {name}: {exc}"))
            continue
        old_tree = _parse_tree(old_text)
        new_tree = old_tree if new_text == old_text else _parse_tree(new_text)
        diffs[stack] = diff = StackDiff(stack, old_text, new_text, old_tree, new_tree)
        plan.strict[stack] = bool(_spec_of(diff.old_doc).get("strict")) or bool(
            _spec_of(diff.new_doc).get("strict"))
    for diff in diffs.values():
        if diff.old_text != diff.new_text:
            plan_stack(plan, diff, root, history_rev=start, sudo_holders=frozenset(sudo_holders))
    try:
        files = file_changes.classify_files(changed, read_old, read_new)
    except BadInput as exc:
        plan.findings.append(Finding(REPOSITORY, "error", str(exc)))
        files = file_changes.FileReview()
    plan.changes.extend(files.changes)
    plan.other_files = files.other_files
    plan.changes.sort(key=lambda c: (KINDS.index(c.kind), c.stack, c.subject, c.field))
    if with_privilege:
        plan.privilege = privilege.compute(
            {s: _spec_of(d.old_doc) or None for s, d in diffs.items()},
            {s: _spec_of(d.new_doc) or None for s, d in diffs.items() if d.new_text is not None},
            _policy_texts(root, start), _policy_texts(root, head),
            privilege.expectation_paths(expectations_old)
            | privilege.expectation_paths(expectations_new), engine=engine)
    rotated = {f"{r.stack} {r.secret}" for r in plan.rotations if r.follows is None}
    for stack, message in rules.violations(plan.changes, plan.privilege, rotated, plan.strict,
                                           acknowledge):
        plan.findings.append(Finding(stack, "error", message))
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


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _why(r: Rotation) -> str:
    return " ".join(x for x in (r.reason or "", f"ticket {r.ticket}" if r.ticket else "")
                    if x) or "—"


def restart_plan(rotations: list[Rotation]) -> list[dict[str, Any]]:
    """Return each affected workload once per stack, with the secrets it picks up.

    In the order the rotations name their consumers (first seen first), the
    order ``reload`` restarts them in: a workload consuming several rotated
    secrets restarts once, after the apply wrote all of them.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rotations:
        for workload in r.restarts:
            entry = out.setdefault((r.stack, workload), {"stack": r.stack, "workload": workload,
                                                         "secrets": []})
            entry["secrets"].append(r.secret)
    return list(out.values())


def _restart_lines(plan: Plan) -> list[str]:
    restarts = restart_plan(plan.rotations)
    if not restarts:
        return []
    return ["", "**Restarts** (each workload once, after the apply wrote all its secrets, in "
            "consumer order)", ""] + [
        f"{i}. `{e['stack']}` {e['workload']}: picks up "
        f"{', '.join(f'`{s}`' for s in e['secrets'])}" for i, e in enumerate(restarts, 1)]


def _lifecycle_note(r: Rotation) -> str:
    if r.restores is not None:
        return f" **rollback: restores version {r.restores}**"
    if r.retired is not None:
        return f" **retire: drops the previous value kept in version {r.retired}**"
    if r.previous is not None:
        return f" (keeps version {r.previous} as `<KEY>_PREVIOUS` until retire)"
    return ""


def render_markdown(plan: Plan) -> str:  # noqa: PLR0912, PLR0915 - one section after another
    """Return the plan as a pull-request comment (Markdown)."""
    short = plan.merge_base[:12] if plan.merge_base else plan.base
    lines = [f"### Rotation plan ({plan.base} → {plan.head}, from merge base `{short}`)", ""]
    kv = [r for r in plan.rotations if r.kind == "kv"]
    others = [r for r in plan.rotations if r.kind != "kv"]
    if kv:
        lines += ["| stack | secret | version | CAS | consumers to reload | restarts | why |",
                  "|---|---|---|---|---|---|---|"]
        for r in kv:
            note = (f" (follows {r.follows})" if r.follows else "") + _lifecycle_note(r)
            lines.append(f"| {r.stack} | `{r.secret}`{note} | {r.old_version} → "
                         f"{r.new_version} | {r.cas} | {', '.join(r.consumers) or '—'} | "
                         f"{', '.join(r.restarts) or '—'} | {_cell(_why(r))} |")
    if others:
        lines += [""] if kv else []
        lines += ["| stack | kind | credential | version | pulumi up will | consumers to reload "
                  "| restarts | why |", "|---|---|---|---|---|---|---|---|"]
        for r in others:
            lines.append(f"| {r.stack} | {r.kind} | `{r.secret}` | {r.old_version} → "
                         f"{r.new_version} | {r.apply} | "
                         f"{(', '.join(r.consumers) + ': ') if r.consumers else ''}{r.reload} | "
                         f"{', '.join(r.restarts) or '—'} | {_cell(_why(r))} |")
    lines += _restart_lines(plan)
    if plan.rotations:
        lines += ["", "**Checks that will prove it**", ""]
        for r in plan.rotations:
            lines += [f"- `{r.stack}` `{r.secret}`:"] + [f"  - {c}" for c in r.checks]
    else:
        lines.append("No rotations in this diff.")
    for kind in KINDS:
        changes = [c for c in plan.changes if c.kind == kind]
        if not changes:
            continue
        lines += ["", f"**{kind.capitalize()} changes**", "",
                  "| environment | who / what | field | old → new | why |",
                  "|---|---|---|---|---|"]
        for c in changes:
            where = "every stack" if c.stack == REPOSITORY else c.stack
            strict = " (strict)" if plan.strict.get(c.stack) else ""
            lines.append(f"| {where}{strict} | {_cell(c.subject)} | {_cell(c.field)} | "
                         f"{_cell(c.old)} → {_cell(c.new)} | {_cell(c.why) or '—'} |")
    report = plan.privilege
    if report.diffs or report.note or report.ran:
        lines += ["", "**Capabilities per principal**" + (
            f" (asked of OpenBao's policy engine: `sys/capabilities` on {report.paths} paths)"
            if report.ran else ""), ""]
        if report.note:
            lines.append(report.note)
        if any(path.rsplit("/", 1)[-1] == privilege.GLOB_FILL for d in report.diffs
               for path in [*d.gained, *d.lost]):
            lines += [f"(a path ending in `{privilege.GLOB_FILL}` stands for any name a policy "
                      "glob matches there)", ""]
        if report.ran and not report.diffs:
            lines.append("No principal gains or loses a capability.")
        for d in report.diffs:
            strict = " (strict)" if plan.strict.get(d.principal.stack) else ""
            policies = (f"policies {', '.join(d.old_policies) or 'none'} → "
                        f"{', '.join(d.new_policies) or 'none'}"
                        if d.old_policies != d.new_policies else
                        f"policies {', '.join(d.new_policies) or 'none'}")
            lines.append(f"- `{d.principal.stack}`{strict} {d.principal.label} ({policies}):")
            for label, entries in (("gains", d.gained), ("loses", d.lost)):
                shown = list(entries.items())
                for path, caps in shown[:12]:
                    lines.append(f"  - {label} {', '.join(caps)} on `{path}`")
                if len(shown) > 12:
                    lines.append(f"  - {label} more on {len(shown) - 12} other paths (--json)")
            if not d.gained and not d.lost:
                lines.append("  - no capability changes on the probed paths")
    if plan.other_files:
        lines += ["", f"Other files changed (not classified): "
                  f"{', '.join(f'`{f}`' for f in plan.other_files[:20])}"
                  + (f" (+{len(plan.other_files) - 20} more)" if len(plan.other_files) > 20
                     else "")]
    if plan.acknowledged:
        lines += ["", f"Acknowledged by the pull request: {', '.join(plan.acknowledged)}"]
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


@dataclass(frozen=True)
class Rotated:
    """What a rotation of one stack writes, as the command after it learns it.

    ``kinds`` maps each credential id to its class (``kv`` for a KV secret);
    ``notes`` to the reason and ticket ``bump --reason/--ticket`` wrote in the
    plan's diff (None when not known, e.g. for ``--secret``).
    """

    kinds: dict[str, str]
    notes: dict[str, tuple[str | None, str | None]]

    @property
    def secrets(self) -> list[str]:
        """The KV secrets written."""
        return [cid for cid, kind in self.kinds.items() if kind == "kv"]

    @property
    def credentials(self) -> list[str]:
        """The JWT keys, root credentials, static roles and lease generations rotated."""
        return [cid for cid, kind in self.kinds.items() if kind != "kv"]


def rotated_in(root: Path, target: StackTarget, base: str | None, explicit: list[str]) -> Rotated:
    """Return what a rotation of ``target`` writes, from one plan.

    ``explicit`` (``--secret``) wins; otherwise the plan of ``base`` (default
    ``HEAD~1`` when it exists) against the working tree, for this stack.
    """
    if explicit:
        kinds = {c.id: c.kind for c in credentials(target.spec)}
        kinds |= {s.id: "kv" for s in target.spec.static_secrets}
        unknown = [s for s in explicit if s not in kinds]
        if unknown:
            raise BadInput(f"Pulumi.{target.name}.yaml: unknown secret(s) "
                           f"{', '.join(describe(s) for s in unknown)}")
        return Rotated({s: kinds[s] for s in explicit}, dict.fromkeys(explicit, (None, None)))
    if base is None:
        try:
            gitutil.rev_parse(root, "HEAD~1")
        except BadInput:
            return Rotated({}, {})
        base = "HEAD~1"
    mine = [r for r in build_plan(root, base, None).rotations if r.stack == target.name]
    return Rotated({r.secret: r.kind for r in mine},
                   {r.secret: (r.reason, r.ticket) for r in mine})


def engine_likely_needed(root: Path, base: str, head: str | None) -> bool:
    """Return whether the diff edits a policy file or adds or removes a stack file.

    Then the capability diff will need the engine, so the gate starts it early;
    a binding edited inside a stack file starts it later, when the plan sees it.
    """
    start = gitutil.merge_base(root, base, head or "HEAD")
    for status, path, _ in gitutil.changed_files(root, start, head):
        if path.startswith(file_changes.POLICY_DIR) and path.endswith(".hcl"):
            return True
        if file_changes.is_stack_file(path) and status in {"A", "D", "R"}:
            return True
    return False
