"""``reload --stack ENV [--from-plan plan.json]``: the runbook's post-rotation step 1.

"Trigger credential reloads for all affected services": each workload whose service
consumes a rotated secret and is ``restarted_by: reload`` is restarted once (the
``kubectl rollout restart`` annotation on its Deployment/StatefulSet/DaemonSet), in the
order of the plan's rotations, however many of its secrets rotated. Services that VSO
restarts (``restarted_by: vso``, its ``rolloutRestartTargets``) are listed, not
restarted; services outside Kubernetes are listed for a reload by hand.

The rotations come from ``--from-plan`` (the JSON of ``python -m rotation plan
--json``) or, without it, from the plan of ``--base`` (default ``HEAD~1``) against the
working tree. Exit 1 at the first restart that fails, with what was restarted and what
remains.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kernel.spec.model import EnvironmentSpec
from rotation import gitutil
from rotation.errors import BadInput, CheckFailed, RotationError
from rotation.kube import Cluster, add_kube_arguments
from rotation.output import Result, log
from rotation.planning import build_plan
from rotation.stacks import load_stack, repo_root

NAME = "reload"
HELP = "restart each workload a rotation affects once, in the plan's order"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register reload's arguments."""
    parser.add_argument("--stack", required=True, help="stack name (prod, staging, dr, local)")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--from-plan", type=Path, metavar="PLAN_JSON",
                        help="the rotations of this plan (`python -m rotation plan --json`)")
    parser.add_argument("--base", help="without --from-plan: the revision before the "
                        "rotation (default: HEAD~1)")
    add_kube_arguments(parser)


@dataclass(frozen=True)
class PlannedRotation:
    """The part of a plan's rotation that reload needs."""

    secret: str
    consumers: tuple[str, ...]


def rotations_from_file(path: Path, stack: str) -> list[PlannedRotation]:
    """Read a ``plan --json`` file; every problem names the file and the field."""
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"--from-plan: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: line {exc.lineno}: not JSON ({exc.msg})") from None
    rotations = doc.get("rotations") if isinstance(doc, dict) else None
    if not isinstance(rotations, list):
        raise BadInput(f"{path}: rotations: missing or not a list (is this `plan --json`?)")
    out = []
    for i, item in enumerate(rotations):
        where = f"{path}: rotations[{i}]"
        if not isinstance(item, dict):
            raise BadInput(f"{where}: not an object")
        for key, typ in (("stack", str), ("secret", str), ("consumers", list)):
            if not isinstance(item.get(key), typ):
                raise BadInput(f"{where}.{key}: missing or not a {typ.__name__}")
        if not all(isinstance(c, str) for c in item["consumers"]):
            raise BadInput(f"{where}.consumers: every entry must be a service name")
        if item["stack"] == stack:
            out.append(PlannedRotation(item["secret"], tuple(item["consumers"])))
    return out


def rotations_from_git(root: Path, stack: str, base: str | None) -> list[PlannedRotation]:
    """Return the rotations of ``stack`` in the plan of ``base`` (default HEAD~1)..worktree."""
    if base is None:
        try:
            gitutil.rev_parse(root, "HEAD~1")
        except BadInput:
            return []
        base = "HEAD~1"
    plan = build_plan(root, base, None)
    return [PlannedRotation(r.secret, tuple(r.consumers)) for r in plan.rotations
            if r.stack == stack]


@dataclass
class Workload:
    """One workload to restart, and the rotated secrets that make it restart."""

    namespace: str
    kind: str
    name: str
    secrets: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``namespace/Kind/name``, as the plan writes it."""
        return f"{self.namespace}/{self.kind}/{self.name}"


def restart_order(spec: EnvironmentSpec, source: str,
                  rotations: list[PlannedRotation]) -> tuple[list[Workload], list[dict[str, str]]]:
    """Workloads to restart (each once, first-seen order) and the consumers left to others."""
    services = {s.name: s for s in spec.services}
    order: dict[tuple[str, str, str], Workload] = {}
    others: dict[str, dict[str, str]] = {}
    for rotation in rotations:
        for consumer in rotation.consumers:
            service = services.get(consumer)
            if service is None:
                raise BadInput(f"{source}: {rotation.secret}: consumer {consumer!r} is not a "
                               f"service of Pulumi.{spec.environment}.yaml")
            binding = service.kubernetes
            if binding is None:
                host = service.outside_cluster.host if service.outside_cluster else "?"
                others[consumer] = {"service": consumer, "by": "hand",
                                    "reason": f"outside Kubernetes (host {host})"}
            elif binding.restarted_by != "reload":
                others[consumer] = {"service": consumer, "by": "vso",
                                    "reason": "VSO restarts it (rolloutRestartTargets)"}
            else:
                key = (binding.namespace, binding.workload.kind, binding.workload.name)
                workload = order.setdefault(key, Workload(*key))
                if rotation.secret not in workload.secrets:
                    workload.secrets.append(rotation.secret)
    return list(order.values()), list(others.values())


def run(args: argparse.Namespace) -> Result:
    """Restart the affected workloads once each, in plan order."""
    root = repo_root(args.repo)
    spec = load_stack(root, args.stack)
    if args.from_plan is not None:
        source = str(args.from_plan)
        rotations = rotations_from_file(args.from_plan, args.stack)
    else:
        source = f"plan {args.base or 'HEAD~1'}..working tree"
        rotations = rotations_from_git(root, args.stack, args.base)
    workloads, others = restart_order(spec, source, rotations)
    restarted: list[dict[str, Any]] = []
    failures: list[str] = []
    remaining: list[str] = []
    if workloads:
        context = spec.delivery.context if spec.delivery is not None else None
        cluster = Cluster.from_args(args, context)
        for i, workload in enumerate(workloads):
            try:
                stamp = cluster.rollout_restart(workload.kind, workload.name, workload.namespace)
            except RotationError as exc:
                if isinstance(exc, BadInput):
                    raise
                failures.append(str(exc))
                remaining = [w.ref for w in workloads[i + 1:]]
                break
            log.info("restarted %s (restartedAt %s)", workload.ref, stamp)
            restarted.append({"workload": workload.ref, "restarted_at": stamp,
                              "secrets": workload.secrets})
    payload: dict[str, Any] = {
        "ok": not failures, "stack": args.stack, "source": source,
        "rotations": [r.secret for r in rotations], "restarted": restarted,
        "not_restarted": others, "remaining": remaining, "failures": failures,
    }

    def render(out: TextIO) -> None:
        if not rotations:
            out.write(f"no rotations of {args.stack} in {source}: nothing to reload\n")
        for entry in restarted:
            out.write(f"restarted {entry['workload']} at {entry['restarted_at']} "
                      f"({', '.join(entry['secrets'])})\n")
        for entry in others:
            out.write(f"not restarted: {entry['service']}: {entry['reason']}\n")
        for failure in failures:
            out.write(f"FAIL {failure}\n")
        for ref in remaining:
            out.write(f"not reached: {ref} (re-run reload after fixing the failure)\n")

    if failures:
        return Result(payload, render, exit_code=CheckFailed.exit_code)
    return Result(payload, render)
