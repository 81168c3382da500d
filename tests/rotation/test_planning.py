"""``rotated_in``: what the commands after a rotation (preflight, verify, record) learn it wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotation import planning
from rotation.cli import main
from rotation.errors import BadInput
from rotation.stacks import StackTarget, load_stack

SIGNING = "secret/services/execution/session-signing-key"
JWT = "identity/oidc/key/tradepulse-adapters"


def target(root: Path, stack: str) -> StackTarget:
    return StackTarget(stack, load_stack(root, stack), None)  # type: ignore[arg-type]


def test_one_plan_gives_the_secrets_the_credentials_and_the_notes(
    stack_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["bump", "--stack", "local", SIGNING, "--repo", str(stack_repo),
                 "--reason", "scheduled", "--ticket", "SEC-1"]) == 0
    assert main(["bump", "--stack", "local", JWT, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 0
    subprocess.run(["git", "-C", str(stack_repo), "commit", "-qam", "rotate"], check=True)
    plans: list[tuple[Any, ...]] = []
    build = planning.build_plan

    def counted(*args: Any, **kwargs: Any) -> planning.Plan:
        plans.append(args)
        return build(*args, **kwargs)

    monkeypatch.setattr(planning, "build_plan", counted)
    rotation = planning.rotated_in(stack_repo, target(stack_repo, "local"), None, [])
    assert len(plans) == 1 and plans[0][1] == "HEAD~1"
    assert rotation.secrets == [SIGNING]
    assert rotation.credentials == [JWT]
    assert rotation.notes[SIGNING] == ("scheduled", "SEC-1")
    assert rotation.notes[JWT] == (None, None)


def test_named_secrets_replace_the_plan_and_an_unknown_one_is_refused(stack_repo: Path) -> None:
    local = target(stack_repo, "local")
    rotation = planning.rotated_in(stack_repo, local, None, [JWT, SIGNING])
    assert (rotation.secrets, rotation.credentials) == ([SIGNING], [JWT])
    with pytest.raises(BadInput, match=r"Pulumi\.local\.yaml: unknown secret\(s\) 'nope'"):
        planning.rotated_in(stack_repo, local, None, [SIGNING, "nope"])
