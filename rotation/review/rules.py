"""What fails a pull request: unacknowledged risk in a strict stack, and impure rotations.

* In a strict stack (the spec's ``strict: true``, at the base or the head), a
  privilege gain, a weakening or a destructive change fails unless the pull
  request acknowledges that class (``--acknowledge privilege,weakening,
  destructive``; the workflow passes the PR's ``acknowledge:<class>`` labels).
  A repository-wide change (a policy file, the capability matrix, the gate's
  own files) counts as strict: it reaches prod. A non-strict stack's changes
  are shown and pass.
* A sudo holder (break-glass) bound to a role, or declared in a non-strict
  stack, needs ``weakening`` acknowledged in any stack; a new stack needs
  ``privilege`` (it declares its own strictness).
* A privilege gain is what the engine says a principal may newly do; a
  binding change that can only narrow access (a lower TTL, a policy removed)
  is shown but needs no acknowledgement.
* A pull request that rotates secrets changes nothing else, so its review
  stays mechanical; the other changes go in their own pull request.
* When the capability diff could not be computed, nothing can be said about
  privilege, so the plan fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rotation.errors import BadInput
from rotation.review.changes import ACKNOWLEDGEABLE, PRIVILEGE, REPOSITORY, Change
from rotation.review.privilege import PrivilegeReport

LABEL_PREFIX = "acknowledge:"


def parse_acknowledge(values: Iterable[str]) -> frozenset[str]:
    """Parse ``--acknowledge`` values (comma-separated, repeatable); BadInput if unknown."""
    found: set[str] = set()
    for value in values:
        for part in value.split(","):
            name = part.strip().removeprefix(LABEL_PREFIX)
            if not name:
                continue
            if name not in ACKNOWLEDGEABLE:
                raise BadInput(f"--acknowledge: unknown class {name!r} (one of "
                               f"{', '.join(ACKNOWLEDGEABLE)})")
            found.add(name)
    return frozenset(found)


def _strict(stack: str, strict: Mapping[str, bool]) -> bool:
    return stack == REPOSITORY or strict.get(stack, False)


def violations(
    changes: Iterable[Change], privilege: PrivilegeReport, rotated: Iterable[str],
    strict: Mapping[str, bool], acknowledged: frozenset[str],
) -> list[tuple[str, str]]:
    """Return ``(stack, message)`` for each rule the diff breaks."""
    out: list[tuple[str, str]] = []
    changes = list(changes)
    for change in changes:
        if change.kind in ACKNOWLEDGEABLE and change.gain and change.kind not in acknowledged \
                and (change.always or _strict(change.stack, strict)):
            where = "a strict stack" if _strict(change.stack, strict) else "any stack"
            out.append((change.stack, f"{change.subject}: {change.field}: {change.old} -> "
                        f"{change.new} is a {change.kind} change in {where}; it needs "
                        f"the label {LABEL_PREFIX}{change.kind} (--acknowledge {change.kind})"))
    for diff in privilege.diffs:
        stack = diff.principal.stack
        if diff.gained and _strict(stack, strict) and PRIVILEGE not in acknowledged:
            shown = "; ".join(f"{', '.join(caps)} on {path}"
                              for path, caps in list(diff.gained.items())[:3])
            more = f" (+{len(diff.gained) - 3} more paths)" if len(diff.gained) > 3 else ""
            out.append((stack, f"{diff.principal.label} gains {shown}{more}: a privilege gain "
                        f"in a strict stack needs the label {LABEL_PREFIX}{PRIVILEGE} "
                        f"(--acknowledge {PRIVILEGE})"))
    out.extend((REPOSITORY, error) for error in privilege.errors)
    rotated = sorted(set(rotated))
    if rotated and (changes or privilege.diffs):
        kinds = sorted({c.kind for c in changes} | ({PRIVILEGE} if privilege.diffs else set()))
        out.append((REPOSITORY, f"this diff rotates secrets in {', '.join(rotated)} and also "
                    f"makes {len(changes)} other change(s) ({', '.join(kinds)}): a rotation "
                    "pull request changes only secret versions; move the other changes to "
                    "their own pull request"))
    return out
