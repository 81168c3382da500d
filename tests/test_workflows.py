"""The GitHub workflows: valid against GitHub's workflow schema, and doing what docs/gates.md says.

The schema is the one `check-jsonschema` vendors from SchemaStore
(``vendor.github-workflows``); its CLI is run too, as CI would. The other tests
read the workflows as data: the pull-request gates, the staging -> prod -> dr
order with protected environments, and every ``python -m rotation`` command
line parsed by the CLI's own parser, so a renamed flag breaks here, not in CI.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from kernel import paths
from kernel.spec import load_stack_file
from kernel.targets import ROTATION_ONLY_ENV
from rotation.cli import build_parser
from rotation.errors import BadInput
from tests.conftest import REPO_ROOT, STACKS

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))


@cache
def workflow_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "github-workflows.json").read_text())
    return schema


def load(path: Path) -> Any:
    # YAML 1.2 (as GitHub reads it): `on` stays a key, not the boolean true.
    return YAML(typ="safe", pure=True).load(path.read_text())


def workflow(name: str) -> Any:
    return load(WORKFLOWS / name)


def steps_using(job: Any, action: str) -> list[Any]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(f"{action}@")]


def step_index(job: Any, predicate: Any) -> int:
    return next(i for i, s in enumerate(job["steps"]) if predicate(s))


def test_there_are_the_three_workflows() -> None:
    assert [p.name for p in FILES] == ["deploy-stack.yml", "main.yml", "pull-request.yml",
                                       "rotation-due.yml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_matches_the_github_workflow_schema(path: Path) -> None:
    validator = jsonschema.Draft7Validator(workflow_schema())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
              for e in validator.iter_errors(load(path))]
    assert errors == []


def run_check_jsonschema(*files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
         "vendor.github-workflows", *map(str, files)],
        capture_output=True, text=True, check=False, timeout=120)


def test_check_jsonschema_accepts_every_workflow() -> None:
    result = run_check_jsonschema(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    text = (WORKFLOWS / "pull-request.yml").read_text()
    broken.write_text(text.replace("    runs-on: ubuntu-latest\n    timeout-minutes: 10\n",
                                   "    run-on: ubuntu-latest\n    timeout-minutes: ten\n", 1))
    assert broken.read_text() != text
    result = run_check_jsonschema(broken)
    assert result.returncode == 1
    assert "broken.yml" in result.stdout
    validator = jsonschema.Draft7Validator(workflow_schema())
    assert list(validator.iter_errors(load(broken)))


# --- pull requests --------------------------------------------------------------------------


def test_pull_requests_run_the_gate_the_tests_and_a_preview_per_stack() -> None:
    wf = workflow("pull-request.yml")
    assert wf["on"] == {"pull_request": {"branches": ["main"], "types": [
        "opened", "synchronize", "reopened", "labeled", "unlabeled"]}}
    assert wf["permissions"] == {"contents": "read"}
    assert set(wf["jobs"]) == {"gate", "tests", "preview"}
    gate = wf["jobs"]["gate"]
    runs = [s.get("run", "") for s in gate["steps"]]
    assert any("python -m rotation gate --base \"$BASE_SHA\" --head \"$HEAD_SHA\"" in r
               for r in runs)
    assert gate["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    # the pull request's acknowledge:<class> labels become --acknowledge for gate and plan
    assert gate["env"]["LABELS"] == "${{ toJSON(github.event.pull_request.labels.*.name) }}"
    assert any('select(startswith("acknowledge:"))' in r and "ACKNOWLEDGE=" in r for r in runs)
    assert sum('--acknowledge "$ACKNOWLEDGE"' in r for r in runs) == 2
    [comment] = steps_using(gate, "marocchino/sticky-pull-request-comment")
    assert comment["with"]["path"] == "rotation-plan.md"
    assert any("python -m rotation plan" in r and "> rotation-plan.md" in r for r in runs)
    tests = wf["jobs"]["tests"]
    assert any('pytest -m "not e2e"' in s.get("run", "") for s in tests["steps"])
    assert any(s.get("run") == "make lint" for s in tests["steps"])


def test_main_gates_the_push_with_what_its_pull_request_acknowledged() -> None:
    gate = workflow("main.yml")["jobs"]["gate"]
    assert gate["permissions"] == {"contents": "read", "pull-requests": "read"}
    runs = [s.get("run", "") for s in gate["steps"]]
    assert any("commits/$GITHUB_SHA/pulls" in r and "ACKNOWLEDGE=" in r for r in runs)
    assert any('rotation gate --base "$BEFORE" --head "$GITHUB_SHA" --acknowledge '
               '"$ACKNOWLEDGE"' in r for r in runs)


def test_the_preview_runs_the_policy_pack_and_comments_on_the_pull_request() -> None:
    preview = workflow("pull-request.yml")["jobs"]["preview"]
    assert preview["needs"] == "gate"
    stacks = {p.name[len("Pulumi."):-len(".yaml")] for p in REPO_ROOT.glob("Pulumi.*.yaml")}
    assert set(preview["strategy"]["matrix"]["stack"]) == stacks - {"local"}
    assert preview["environment"] == "${{ matrix.stack }}-preview"
    [pulumi] = steps_using(preview, "pulumi/actions")
    want = {"command": "preview", "stack-name": "${{ matrix.stack }}", "diff": True,
            "policyPacks": "policies/guard", "comment-on-pr": True, "edit-pr-comment": True}
    assert {k: pulumi["with"][k] for k in want} == want
    [vault] = steps_using(preview, "hashicorp/vault-action")
    assert vault["with"]["role"] == "ci-preview-${{ matrix.stack }}"
    assert preview["permissions"]["id-token"] == "write"


# --- main ------------------------------------------------------------------------------------


def test_main_applies_staging_then_prod_then_dr_in_their_environments() -> None:
    wf = workflow("main.yml")
    assert wf["on"] == {"push": {"branches": ["main"]}}
    assert wf["concurrency"]["cancel-in-progress"] is False
    jobs = wf["jobs"]
    assert [jobs[s]["needs"] for s in ("staging", "prod", "dr")] == ["gate", "staging", "prod"]
    for stack in ("staging", "prod", "dr"):
        job = jobs[stack]
        assert job["uses"] == "./.github/workflows/deploy-stack.yml"
        assert (job["with"]["stack"], job["with"]["environment"]) == (stack, stack)
        assert job["with"]["before"] == "${{ github.event.before }}"
    assert (jobs["prod"]["with"]["watch"], jobs["dr"]["with"]["watch"]) == ("15m", "15m")


def test_each_stack_is_previewed_preflighted_applied_verified_and_recorded() -> None:
    wf = workflow("deploy-stack.yml")
    assert set(wf["on"]["workflow_call"]["inputs"]) == {"stack", "environment", "before",
                                                       "watch"}
    job = wf["jobs"]["up"]
    assert job["environment"] == {"name": "${{ inputs.environment }}"}
    [vault] = steps_using(job, "hashicorp/vault-action")
    assert vault["with"]["role"] == "ci-rotate-${{ inputs.stack }}"
    [up] = steps_using(job, "pulumi/actions")
    assert (up["with"]["command"], up["with"]["policyPacks"]) == ("up", "policies/guard")
    order = [
        step_index(job, lambda s: "rotation plan" in s.get("run", "")),
        step_index(job, lambda s: "rotation preflight" in s.get("run", "")),
        step_index(job, lambda s: str(s.get("uses", "")).startswith("pulumi/actions@")),
        step_index(job, lambda s: "rotation verify" in s.get("run", "")),
        step_index(job, lambda s: "rotation record" in s.get("run", "")),
    ]
    assert order == sorted(order)
    verify = job["steps"][order[3]]
    record = job["steps"][order[4]]
    assert verify["if"] == record["if"] == "steps.plan.outputs.rotations != '0'"


def test_a_rotation_only_push_applies_the_plans_urns_then_checks_the_whole_stack() -> None:
    job = workflow("deploy-stack.yml")["jobs"]["up"]
    plan = job["steps"][step_index(job, lambda s: "rotation plan" in s.get("run", ""))]
    assert ".targeted_apply[$s].targets" in plan["run"] and "targets<<" in plan["run"]
    # The rotation-only program is asked for with the same URNs, only when the plan allows
    # it, and then without --target-dependents (kernel.targets.rotation_only_secrets).
    assert ".targeted_apply[$s].rotation_only" in plan["run"]
    assert 'if [ "$only" = "true" ]; then' in plan["run"]
    assert "echo \"rotation_only_targets=$(jq" in plan["run"]
    assert "GITHUB_ENV" not in json.dumps(job), "the apply step alone may see it"
    [up] = steps_using(job, "pulumi/actions")
    assert up["env"] == {ROTATION_ONLY_ENV: "${{ steps.plan.outputs.rotation_only_targets }}"}
    assert up["with"]["target"] == "${{ steps.plan.outputs.targets }}"
    assert up["with"]["target-dependents"] == ("${{ steps.plan.outputs.targets != '' && "
                                               "steps.plan.outputs.rotation_only != 'true' }}")
    at = step_index(job, lambda s: "--expect-no-changes" in s.get("run", ""))
    check = job["steps"][at]
    assert check["if"] == "steps.plan.outputs.targets != ''"
    assert 'pulumi preview --stack "$STACK" --expect-no-changes' in check["run"]
    assert ROTATION_ONLY_ENV not in json.dumps(check), "the check runs the whole program"
    assert step_index(job, lambda s: s is up) < at < step_index(
        job, lambda s: "rotation verify" in s.get("run", ""))


# --- every command line and action reference --------------------------------------------------


def folded_runs() -> list[tuple[str, str]]:
    out = []
    for path in FILES:
        def walk(node: Any, name: str = path.name) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "run" and isinstance(value, str):
                        for chunk in re.split(r"\n(?=\S)", value):
                            out.extend((name, m.group(1)) for m in re.finditer(
                                r"python -m rotation ([^>|\n]+(?:\n\s+[^>|\n]+)*)", chunk))
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)
        walk(load(path))
    return out


COMMANDS = folded_runs()


def test_the_workflows_call_the_rotation_cli() -> None:
    assert sorted({cmd.split()[0] for _, cmd in COMMANDS}) == [
        "bump", "gate", "plan", "preflight", "record", "verify"]


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=lambda c: str(c)[:40])
def test_every_rotation_command_line_parses(source: str, command: str) -> None:
    text = re.sub(r"\$\{\{[^}]*\}\}", "X", " ".join(command.split()))
    # Shell variables become sample values of the right shape.
    samples = {"$WATCH": "15m", "$STACK": "prod"}
    argv = [re.sub(r"\$[A-Z_]+", lambda m: samples.get(m.group(0), "X"), word)
            for word in shlex.split(text)]
    try:
        build_parser().parse_args(argv)
    except BadInput as exc:
        pytest.fail(f"{source}: `python -m rotation {command.strip()}`: {exc}")


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_actions_are_pinned_to_a_release(path: Path) -> None:
    refs = re.findall(r"uses:\s*(\S+)", path.read_text())
    external = [r for r in refs if not r.startswith("./")]
    assert external or path.name == "main.yml"
    for ref in external:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", ref), f"{path.name}: {ref}"


# --- scheduled rotations --------------------------------------------------------------------


def test_due_rotations_open_one_pull_request_per_environment_with_an_app_token() -> None:
    wf = workflow("rotation-due.yml")
    assert [c["cron"] for c in wf["on"]["schedule"]] == ["17 6 * * 1"]  # weekly
    job = wf["jobs"]["due"]
    assert job["strategy"]["matrix"]["stack"] == ["staging", "prod", "dr"]
    bump = step_index(job, lambda s: "bump --due" in str(s.get("run", "")))
    (app,) = steps_using(job, "actions/create-github-app-token")
    (opened,) = steps_using(job, "peter-evans/create-pull-request")
    assert bump < job["steps"].index(app) < job["steps"].index(opened)
    # Not GITHUB_TOKEN: its pull requests would not run the pull_request checks.
    assert opened["with"]["token"] == "${{ steps.app.outputs.token }}"
    assert opened["with"]["body-path"] == "body.md"
    assert opened["with"]["branch"] == "rotation-due/${{ matrix.stack }}"
    assert "rotation plan" in next(s["name"] for s in job["steps"]
                                   if "body.md" in str(s.get("run", "")))


def test_the_due_workflow_logs_in_with_the_role_each_of_its_stacks_declares() -> None:
    job = workflow("rotation-due.yml")["jobs"]["due"]
    matrix = job["strategy"]["matrix"]["stack"]
    (vault,) = steps_using(job, "hashicorp/vault-action")
    assert vault["with"]["method"] == "jwt"
    assert job["permissions"]["id-token"] == "write"
    declaring = set()
    for stack in STACKS:
        spec = load_stack_file(paths.stack_file(stack))
        assert spec.auth.jwt is not None
        roles = {r.name: r for r in spec.auth.jwt.roles}
        name = vault["with"]["role"].replace("${{ matrix.stack }}", stack)
        if name not in roles:
            continue
        declaring.add(stack)
        role = roles[name]
        # Only a run of this workflow on main, in its own deployment environment.
        assert role.deployment_environment == job["environment"]["name"].replace(
            "${{ matrix.stack }}", stack)
        assert (role.branch, role.pull_requests) == ("main", False)
        assert role.repository == "tradepulse/tradepulse-vault"
        assert role.policies == ("ci-due",), f"{stack}: {role.policies}"
        assert vault["with"]["path"] == spec.auth.jwt.path
        assert role.token_max_ttl_seconds >= job["timeout-minutes"] * 60
    # Every stack the workflow runs for declares its role, and no other stack does.
    assert declaring == set(matrix)
