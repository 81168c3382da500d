"""Apply a rotation-only change with ``pulumi up --target ...``, registering only what it rotates.

A rotation changes a few resources of a stack; a whole-stack ``pulumi up``
still diffs every resource against Vault. When the plan of the change
(:mod:`rotation.planning`, the same rules as ``rotation plan``) holds
rotations and nothing else, the apply names just the URNs the plan lists for
them (:mod:`kernel.targets`). When every one is a generated or provided KV
secret's (:func:`kernel.targets.rotation_only_secrets`), the program is told
so (``TRADEPULSE_ROTATION_ONLY``) and registers only those secrets, and
``--target-dependents`` is not passed (it could name resources the program
did not register, which the engine would delete; without it, a replacement
with an untargeted dependent is an engine error instead). Otherwise (a
mirror, a rotation action) the whole program runs and ``--target-dependents``
adds whatever depends on the targets. Afterwards a whole-stack ``pulumi
preview --expect-no-changes`` must be clean: that is the proof the targeted
apply left nothing behind, and when it is not clean the apply fails and says
so (``make up-apply`` with ``WHOLE_STACK=1`` applies everything). Any other
change (or a plan finding) is applied whole, as before.

``make up-apply`` (``tools/localenv.py apply``) and the end-to-end tests use
this; the deploy workflow does the same with ``rotation plan --json`` and jq.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel.spec.stackfile import parse_yaml
from kernel.targets import ROTATION_ONLY_ENV
from rotation.planning import Plan, StackDiff, plan_stack


@dataclass
class ApplyResult:
    """What an apply did: targeted or whole, the URNs it named, and whether it converged."""

    ok: bool
    targeted: bool
    targets: list[str] = field(default_factory=list)
    rotation_only: bool = False  # the program registered only the rotated secrets
    message: str = ""
    output: str = ""


def rotation_targets(stack: str, old_text: str | None, new_text: str,
                     root: Path) -> tuple[list[str], str, bool]:
    """Return ``(urns, why, rotation_only)`` of a rotation-only change, or ``[]`` and why not.

    ``old_text`` is the stack file as last applied (None: nothing applied yet),
    ``new_text`` the one to apply; ``root`` holds ``policies/acl``.
    ``rotation_only``: the program may register only the rotated secrets.
    """
    if old_text is None:
        return [], "no record of the last applied stack file", False
    plan = Plan(base="last applied", head="this apply")
    plan_stack(plan, StackDiff(stack, old_text, new_text, parse_yaml(old_text),
                               parse_yaml(new_text)), root)
    if plan.errors:
        return [], f"the plan has findings ({plan.errors[0].message})", False
    if plan.changes:
        return [], f"{len(plan.changes)} change(s) besides rotations", False
    mine = plan.targeted_applies().get(stack)
    if mine is None or not mine["targets"]:
        return [], "no rotations", False
    return mine["targets"], f"{len(plan.rotations)} rotation(s)", mine["rotation_only"]


def target_args(urns: list[str], *, dependents: bool = True) -> list[str]:
    """Return the ``pulumi up`` arguments that restrict it to ``urns`` (and their dependents)."""
    return [*(a for u in urns for a in ("--target", u)),
            *(["--target-dependents"] if dependents else [])]


def rotation_only_env(urns: list[str]) -> dict[str, str]:
    """Return the environment that tells the program to register only what ``urns`` rotate."""
    return {ROTATION_ONLY_ENV: " ".join(urns)}


def apply(ws: Any, stack: str, old_text: str | None, new_text: str, root: Path, *,
          whole_stack: bool = False) -> ApplyResult:
    """Apply ``new_text`` in workspace ``ws`` (already synced): targeted when it only rotates.

    ``ws`` is a :class:`tools.localenv.Workspace`.
    """
    urns, why, only = ([], "whole stack asked for", False) if whole_stack else \
        rotation_targets(stack, old_text, new_text, root)
    if not urns:
        proc = ws.pulumi("up", "--yes", "--skip-preview", check=False)
        return ApplyResult(proc.returncode == 0, False, [], False,
                           f"whole-stack pulumi up ({why})", proc.stdout + proc.stderr)
    proc = ws.pulumi("up", "--yes", "--skip-preview", *target_args(urns, dependents=not only),
                     extra_env=rotation_only_env(urns) if only else None, check=False)
    out = proc.stdout + proc.stderr
    mode = "rotation-only program, " if only else ""
    if proc.returncode != 0:
        return ApplyResult(False, True, urns, only, f"targeted pulumi up of {len(urns)} "
                           f"resource(s) ({mode}{why}) failed", out)
    check = ws.pulumi("preview", "--expect-no-changes", "--diff", check=False)
    if check.returncode != 0:
        return ApplyResult(False, True, urns, only, "the targeted apply left changes in the "
                           "whole stack (pulumi preview --expect-no-changes failed); apply the "
                           "whole stack (make up-apply WHOLE_STACK=1)",
                           out + check.stdout[-4000:])
    return ApplyResult(True, True, urns, only, f"targeted pulumi up of {len(urns)} resource(s) "
                       f"({mode}{why}); whole-stack preview --expect-no-changes clean", out)
