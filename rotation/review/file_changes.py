"""Classify what a diff changes outside the stack files: policies, the matrix, the gate itself.

A stack file names policies; what they grant is in ``policies/acl/*.hcl``, so
an edited policy file is a privilege change even when no stack file moves
(what each principal gains is the capability diff's job). The capability
matrix (``expectations.yaml``) is what the policies are held to: loosening or
dropping an expectation is a weakening, while an entry for a new policy is
configuration. The gate's own code, its secret-scan allowlist, the workflows
and CODEOWNERS decide what this review can see, so changing them is a
weakening too. Every other file (README, docs, tests) is listed, not
classified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rotation.review.changes import (
    ABSENT,
    CONFIGURATION,
    DESTRUCTIVE,
    PRIVILEGE,
    REPOSITORY,
    WEAKENING,
    Change,
)

POLICY_DIR = "policies/acl/"
EXPECTATIONS = "policies/acl/expectations.yaml"
ALLOWLIST = "rotation/gates/secret_allowlist.yaml"
# What the gate runs and what decides who reviews it (see .github/CODEOWNERS).
GATE_PATHS = (
    "rotation/gates/", "rotation/review/", "rotation/planning.py", "rotation/commands/gate.py",
    "rotation/commands/plan.py", "kernel/", "policies/guard/",
    "policies/acl/expectations.schema.json", ".github/",
)

Read = Callable[[str], str | None]  # repository path -> text at one revision (None: absent)


@dataclass
class FileReview:
    """The classified changes of the files outside the stack files, and the rest."""

    changes: list[Change] = field(default_factory=list)
    other_files: list[str] = field(default_factory=list)


def is_stack_file(path: str) -> bool:
    """Return whether ``path`` is a ``Pulumi.<stack>.yaml`` at the top level."""
    return "/" not in path and path.startswith("Pulumi.") and path.endswith(".yaml") \
        and path != "Pulumi.yaml"


def _policy(status: str, path: str, old_path: str | None) -> list[Change]:
    name = path[len(POLICY_DIR):].removesuffix(".hcl")
    if status == "A":
        return [Change(PRIVILEGE, REPOSITORY, f"policy file {name}.hcl", "file", ABSENT, "added",
                       "what it grants, and to whom, is in the capability diff", gain=False,
                       location=path)]
    if status == "D":
        return [Change(DESTRUCTIVE, REPOSITORY, f"policy file {name}.hcl", "file", "present",
                       "removed", "the policy disappears from every stack that loads it",
                       location=path)]
    if status == "R" and old_path:
        old = old_path[len(POLICY_DIR):].removesuffix(".hcl")
        return [Change(DESTRUCTIVE, REPOSITORY, f"policy file {old}.hcl", "file", old,
                       name, "renamed: the policy name (file stem) changes", location=path)]
    return [Change(PRIVILEGE, REPOSITORY, f"policy file {name}.hcl", "rules", "old rules",
                   "new rules", "what changes for whom is in the capability diff", gain=False,
                   location=path)]


def _load(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def expectation_changes(old_text: str | None, new_text: str | None) -> list[Change]:
    """Classify a change of the capability matrix: loosening is a weakening, additions are not."""
    old, new = _load(old_text), _load(new_text)
    if new is None:
        why = "removed" if new_text is None else "no longer parses (see acl-policies)"
        return [Change(WEAKENING, REPOSITORY, "capability matrix", "file", "present", why,
                       "the policies are no longer held to it", location=EXPECTATIONS)]
    if old is None:
        return [Change(CONFIGURATION, REPOSITORY, "capability matrix", "file", ABSENT, "added",
                       gain=False, location=EXPECTATIONS)]
    out: list[Change] = []
    if old.get("sudo") != new.get("sudo"):
        out.append(Change(WEAKENING, REPOSITORY, "capability matrix", "sudo",
                          _sudo(old.get("sudo")), _sudo(new.get("sudo")),
                          "who may hold sudo, and where it is probed", location=EXPECTATIONS))
    before: Mapping[str, Any] = old.get("policies") or {}
    after: Mapping[str, Any] = new.get("policies") or {}
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        if a is None:
            out.append(Change(CONFIGURATION, REPOSITORY, f"capability matrix: {name}",
                              "expectations", ABSENT, "added", "expectations for a new policy",
                              gain=False, location=EXPECTATIONS))
        elif b is None:
            out.append(Change(WEAKENING, REPOSITORY, f"capability matrix: {name}",
                              "expectations", "present", "removed",
                              "the policy is no longer held to anything", location=EXPECTATIONS))
        elif _only_more_denies(a, b):
            out.append(Change(CONFIGURATION, REPOSITORY, f"capability matrix: {name}",
                              "expectations", _count(a), _count(b),
                              "only paths it must not reach were added", gain=False,
                              location=EXPECTATIONS))
        else:
            out.append(Change(WEAKENING, REPOSITORY, f"capability matrix: {name}",
                              "expectations", _count(a), _count(b),
                              "an expectation a policy is held to changed or was dropped",
                              location=EXPECTATIONS))
    for key in sorted((set(old) | set(new)) - {"sudo", "policies"}):
        if old.get(key) != new.get(key):
            out.append(Change(WEAKENING, REPOSITORY, "capability matrix", str(key),
                              str(old.get(key)), str(new.get(key)), location=EXPECTATIONS))
    return out


def _entries(body: Any, key: str) -> set[tuple[str, frozenset[str]]]:
    if not isinstance(body, Mapping):
        return set()
    return {(str(e.get("path")), frozenset(map(str, e.get("capabilities") or [])))
            for e in body.get(key) or [] if isinstance(e, Mapping)}


def _only_more_denies(old: Any, new: Any) -> bool:
    """Return whether ``new`` keeps every allow and deny of ``old`` and only adds denies."""
    return (_entries(old, "allow") == _entries(new, "allow")
            and _entries(old, "deny") <= _entries(new, "deny"))


def _sudo(section: Any) -> str:
    if not isinstance(section, Mapping):
        return ABSENT
    holders = ", ".join(map(str, section.get("holders") or [])) or "nobody"
    return f"holders [{holders}], {len(section.get('probe_paths') or [])} probe paths"


def _count(body: Any) -> str:
    if not isinstance(body, Mapping):
        return ABSENT
    return f"{len(body.get('allow') or [])} allow, {len(body.get('deny') or [])} deny"


def classify_files(
    changed: list[tuple[str, str, str | None]], read_old: Read, read_new: Read
) -> FileReview:
    """Classify ``git diff --name-status`` rows ``(status, path, old_path)`` but stack files."""
    review = FileReview()
    for status, path, old_path in changed:
        if is_stack_file(path) and (old_path is None or is_stack_file(old_path)):
            continue
        if path == EXPECTATIONS:
            review.changes.extend(expectation_changes(read_old(path), read_new(path)))
        elif path.startswith(POLICY_DIR) and path.endswith(".hcl"):
            review.changes.extend(_policy(status, path, old_path))
        elif path == ALLOWLIST:
            review.changes.append(Change(WEAKENING, REPOSITORY, "secret-scan allowlist",
                                         "entries", "old entries", "new entries",
                                         "what the secret scan does not report",
                                         location=path))
        elif path.startswith(GATE_PATHS) or path == "CODEOWNERS":
            review.changes.append(Change(WEAKENING, REPOSITORY, "review machinery", path,
                                         "present" if status != "A" else ABSENT,
                                         {"A": "added", "D": "removed"}.get(status, "edited"),
                                         "the gate's own code, rules or who reviews: what this "
                                         "review can see", location=path))
        else:
            review.other_files.append(path)
    return review
