"""Rotation edits: ``bump`` of 200 secrets in one stack file, and ``plan`` over 1,000 bumps.

Both run ``rotation.cli.main`` in-process on generated repositories (git, one
commit, ``Pulumi.prod.yaml`` holding a generated fleet plus prod's own
services):

* **bump**: a stack file of ``--bump-services`` services (5 secrets each),
  ``--bumps`` sequential ``bump --allow-dirty`` of its generated secrets, each
  timed; the file is then checked to hold every version raised by exactly one;
* **plan**: a stack file of ``--plan-services`` services, ``--plan-bumps``
  generated secrets bumped in the working tree, ``plan`` (HEAD against the
  working tree) timed ``--runs`` times; it must report exactly those rotations.

Baseline in the same run: loading and validating the same stack file once
(``rotation.stacks.load_stack``), the least any edit or plan must do. Targets:
each bump and each plan under 1 s.

    .venv/bin/python bench/rotation_edits.py [--bumps 200] [--plan-bumps 1000] [--json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml
from common import (
    GENERATED_PER_SERVICE,
    SPEC_KEY,
    emit,
    git_init,
    median,
    run_cli,
    secret_path,
    service_name,
    timed,
    write_fleet_repo,
)

TARGET_SECONDS = 1.0


def generated_ids(services: int, count: int) -> list[str]:
    """Return ``count`` generated secret ids of the fleet (2 per service)."""
    ids = [f"secret/{secret_path(service_name(i), k)}" for i in range(services)
           for k in range(GENERATED_PER_SERVICE)]
    if count > len(ids):
        raise SystemExit(f"{services} services have only {len(ids)} generated secrets")
    return ids[:count]


def versions(root: Path) -> dict[str, int]:
    """Return every static secret's declared version in ``Pulumi.prod.yaml``."""
    doc = yaml.safe_load((root / "Pulumi.prod.yaml").read_text(encoding="utf-8"))
    return {f"{s['mount']}/{s['path']}": s.get("version")
            for s in doc["config"][SPEC_KEY]["static_secrets"]}


def baseline(root: Path, runs: int) -> float:
    """Median seconds to load and validate ``Pulumi.prod.yaml`` once."""
    from rotation.stacks import load_stack

    return median([timed(lambda: load_stack(root, "prod")) for _ in range(runs)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bump-services", type=int, default=100)
    parser.add_argument("--bumps", type=int, default=200)
    parser.add_argument("--plan-services", type=int, default=500)
    parser.add_argument("--plan-bumps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5, help="plan and baseline runs (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tp-rotation-edits-") as tmp:
        # bump
        root = write_fleet_repo(Path(tmp) / "bump", args.bump_services)
        git_init(root)
        before = versions(root)
        ids = generated_ids(args.bump_services, args.bumps)
        run_cli("bump", "--stack", "prod", "--repo", str(root), "--allow-dirty", ids[-1])  # warm-up
        # undone: bump refuses a secret already bumped in the working tree
        subprocess.run(["git", "-C", str(root), "checkout", "--", "Pulumi.prod.yaml"], check=True)
        bump_times = [timed(lambda sid=sid: run_cli("bump", "--stack", "prod", "--repo", str(root),
                                                 "--allow-dirty", sid)) for sid in ids]
        after = versions(root)
        moved = {sid for sid in before if after[sid] != before[sid]}
        if moved != set(ids) or any(after[s] != before[s] + 1 for s in ids):
            raise SystemExit("bump did not raise exactly the bumped versions by one")
        bump_secrets = len(before)
        bump_base = baseline(root, args.runs)
        # plan
        proot = write_fleet_repo(Path(tmp) / "plan", args.plan_services)
        git_init(proot)
        stack = proot / "Pulumi.prod.yaml"
        doc = yaml.safe_load(stack.read_text(encoding="utf-8"))
        wanted = set(generated_ids(args.plan_services, args.plan_bumps))
        for secret in doc["config"][SPEC_KEY]["static_secrets"]:
            if f"{secret['mount']}/{secret['path']}" in wanted:
                secret["version"] += 1
        stack.write_text(stack.read_text(encoding="utf-8").splitlines(keepends=True)[0]
                         + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
        plan_secrets = len(doc["config"][SPEC_KEY]["static_secrets"])
        report = run_cli("plan", "--repo", str(proot))
        if len(report["rotations"]) != len(wanted) or report["findings"]:
            raise SystemExit(f"plan found {len(report['rotations'])} rotations and findings "
                             f"{report['findings'][:3]}; expected {len(wanted)} and none")
        plan_times = [timed(lambda: run_cli("plan", "--repo", str(proot)))
                      for _ in range(args.runs)]
        plan_base = baseline(proot, args.runs)
    bump_med = median(bump_times)
    plan_med = median(plan_times)
    rows: list[list[object]] = [
        [f"bump (one of {len(ids)} sequential, --allow-dirty)", args.bump_services, bump_secrets,
         len(ids), f"{bump_med:.3f}", f"{max(bump_times):.3f}", f"{bump_base:.3f}",
         f"{bump_med / bump_base:.2f}x", "yes" if bump_med < TARGET_SECONDS else "NO"],
        [f"plan (diff with {len(wanted)} bumps)", args.plan_services, plan_secrets, args.runs,
         f"{plan_med:.3f}", f"{max(plan_times):.3f}", f"{plan_base:.3f}",
         f"{plan_med / plan_base:.2f}x", "yes" if plan_med < TARGET_SECONDS else "NO"],
    ]
    notes = [f"bump: median and worst of {len(ids)} sequential bumps, {sum(bump_times):.1f}s in "
             "all; each loads and validates the file, edits one line, proves only that "
             "version changed, re-validates and writes atomically",
             f"plan: median and worst of {args.runs} runs, HEAD against the working tree; "
             f"reported {len(wanted)} rotations, no findings",
             "baseline: load_stack of the same file (YAML + schema + cross-checks), median of "
             f"{args.runs}; target: each bump and each plan under {TARGET_SECONDS:.0f} s"]
    emit("Rotation edits", ["operation", "services", "secrets in file", "runs", "median s",
                            "worst s", "baseline s", "ratio to baseline", "< 1 s"],
         rows, notes, args.json,
         {"bump_median_s": bump_med, "plan_median_s": plan_med})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
