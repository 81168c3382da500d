"""Apply a rotation-only change with ``pulumi up --target ... --target-dependents``.

A rotation changes a few resources of a stack; a whole-stack ``pulumi up``
still diffs every resource against Vault. When the plan of the change
(:mod:`rotation.planning`, the same rules as ``rotation plan``) holds
rotations and nothing else, the apply names just the URNs the plan lists for
them (:mod:`kernel.targets`) and lets ``--target-dependents`` add whatever
depends on them. Afterwards a whole-stack ``pulumi preview --expect-no-changes``
must be clean: that is the proof the targeted apply left nothing behind, and
when it is not clean the apply fails and says so (``make up-apply`` with
``WHOLE_STACK=1`` applies everything). Any other change (or a plan finding)
is applied whole, as before.

``make up-apply`` (``tools/localenv.py apply``) and the end-to-end tests use
this; the deploy workflow does the same with ``rotation plan --json`` and jq.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.spec.stackfile import parse_yaml
from rotation.planning import Plan, StackDiff, plan_stack


@dataclass
class ApplyResult:
    """What an apply did: targeted or whole, the URNs it named, and whether it converged."""

    ok: bool
    targeted: bool
    targets: list[str] = field(default_factory=list)
    message: str = ""
    output: str = ""


def rotation_targets(stack: str, old_text: str | None, new_text: str,
                     root: Path) -> tuple[list[str], str]:
    """Return ``(urns, why)``: the URNs of a rotation-only change, or ``[]`` and why not.

    ``old_text`` is the stack file as last applied (None: nothing applied yet),
    ``new_text`` the one to apply; ``root`` holds ``policies/acl``.
    """
    if old_text is None:
        return [], "no record of the last applied stack file"
    plan = Plan(base="last applied", head="this apply")
    plan_stack(plan, StackDiff(stack, old_text, new_text, parse_yaml(old_text),
                               parse_yaml(new_text)), root)
    if plan.errors:
        return [], f"the plan has findings ({plan.errors[0].message})"
    if plan.changes:
        return [], f"{len(plan.changes)} change(s) besides rotations"
    urns = sorted({u for r in plan.rotations if r.stack == stack for u in r.resources})
    if not urns:
        return [], "no rotations"
    return urns, f"{len(plan.rotations)} rotation(s)"


def target_args(urns: list[str]) -> list[str]:
    """Return the ``pulumi up`` arguments that restrict it to ``urns`` and their dependents."""
    return [*(a for u in urns for a in ("--target", u)), "--target-dependents"]


def apply(ws: Any, stack: str, old_text: str | None, new_text: str, root: Path, *,
          whole_stack: bool = False) -> ApplyResult:
    """Apply ``new_text`` in workspace ``ws`` (already synced): targeted when it only rotates.

    ``ws`` is a :class:`tools.localenv.Workspace`.
    """
    urns, why = ([], "whole stack asked for") if whole_stack else rotation_targets(
        stack, old_text, new_text, root)
    if not urns:
        proc = ws.pulumi("up", "--yes", "--skip-preview", check=False)
        return ApplyResult(proc.returncode == 0, False, [],
                           f"whole-stack pulumi up ({why})", proc.stdout + proc.stderr)
    proc = ws.pulumi("up", "--yes", "--skip-preview", *target_args(urns), check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        return ApplyResult(False, True, urns, f"targeted pulumi up of {len(urns)} resource(s) "
                           "failed", out)
    check = ws.pulumi("preview", "--expect-no-changes", "--diff", check=False)
    if check.returncode != 0:
        return ApplyResult(False, True, urns, "the targeted apply left changes in the whole "
                           "stack (pulumi preview --expect-no-changes failed); apply the whole "
                           "stack (make up-apply WHOLE_STACK=1)", out + check.stdout[-4000:])
    return ApplyResult(True, True, urns, f"targeted pulumi up of {len(urns)} resource(s) "
                       f"({why}); whole-stack preview --expect-no-changes clean", out)
