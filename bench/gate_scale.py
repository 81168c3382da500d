"""The PR gate at fleet scale: ``python -m rotation gate`` on this repo and on a 1000-service one.

Each measurement is the whole CLI as CI runs it (a fresh interpreter,
the secret scan reads every file, ``--json``), median of
``--runs``. The generated repository is a git checkout with this repository's
stack files and ``policies/`` (including the capability-matrix expectations),
whose ``Pulumi.prod.yaml`` holds a generated fleet (prod's own services plus
N more, 5 secrets each) with one ACL policy file per service. The baseline in
the same run is a fresh interpreter loading and validating every stack file of
the same repository (``load_stack_file``), the least any gate must do.
Targets: under 10 s on this repository, under 30 s on the 1000-service one.
The exit code and the failing checks are printed as they are: on a generated
fleet a check may fail on content (e.g. its new policies have no expectations);
the timing is what this benchmark reports.

    .venv/bin/python bench/gate_scale.py [--services 1000] [--runs 5] [--json]

``bench/gate_wall_time.py`` breaks down the gate on this repository
(in-process and CLI).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, emit, git_init, median, write_fleet_repo

TARGETS = {"this repository": 10.0, "generated": 30.0}
BASELINE = ("import sys; from pathlib import Path; from kernel.spec import load_stack_file; "
            "root = Path(sys.argv[1]); "
            "[load_stack_file(p, policy_dir=root / 'policies' / 'acl') "
            "for p in sorted(root.glob('Pulumi.*.yaml'))]")


def gate(root: Path) -> tuple[float, int, list[str]]:
    """Run the gate CLI once; return (seconds, exit code, failed checks)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "rotation", "gate", "--repo",
                          str(root), "--json"], cwd=REPO, capture_output=True, text=True,
                         check=False)
    seconds = time.perf_counter() - start
    failed: list[str] = []
    try:
        report: Any = json.loads(out.stdout)
        failed = [c.get("name", "?") for c in report.get("checks", []) if not c.get("ok", True)]
    except (json.JSONDecodeError, AttributeError):
        failed = [f"no JSON report (exit {out.returncode}): {out.stderr.strip()[-200:]}"]
    return seconds, out.returncode, failed


def baseline(root: Path) -> float:
    """Seconds for a fresh interpreter to load and validate every stack file of ``root``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", BASELINE, str(root)], cwd=REPO, check=True)
    return time.perf_counter() - start


def fleet_repo(root: Path, services: int) -> Path:
    """Write and commit the generated repository (policies/ copied whole first)."""
    shutil.copytree(REPO / "policies", root / "policies")
    write_fleet_repo(root, services)
    git_init(root)
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000, help="generated fleet size")
    parser.add_argument("--runs", type=int, default=5, help="runs per repository (median)")
    parser.add_argument("--skip-this-repo", action="store_true",
                        help="only the generated repository (the smoke test uses this)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not (REPO / "rotation" / "commands" / "gate.py").is_file():
        raise SystemExit("rotation/commands/gate.py does not exist yet: nothing to time")
    rows: list[list[object]] = []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tp-gate-scale-") as tmp:
        repos = [] if args.skip_this_repo else [("this repository", REPO)]
        repos.append(("generated", fleet_repo(Path(tmp) / "fleet", args.services)))
        for label, root in repos:
            runs = [gate(root) for _ in range(args.runs)]
            base = median([baseline(root) for _ in range(args.runs)])
            seconds = median([r[0] for r in runs])
            codes = sorted({r[1] for r in runs})
            failed = sorted({name for r in runs for name in r[2]})
            stacks = len(list(root.glob("Pulumi.*.yaml")))
            secrets = 0
            for path in root.glob("Pulumi.*.yaml"):
                secrets += path.read_text(encoding="utf-8").count("\n      - mount:") + \
                    path.read_text(encoding="utf-8").count("\n    - mount:")
            name = label if label != "generated" else f"generated, {args.services} services"
            target = TARGETS[label]
            results.append({"repository": name, "seconds": seconds, "baseline_s": base,
                            "exit_codes": codes, "failed_checks": failed, "target_s": target,
                            "ok": seconds < target})
            rows.append([name, stacks, secrets, args.runs, f"{seconds:.2f}", f"{base:.2f}",
                         f"{seconds / base:.2f}x", ",".join(map(str, codes)),
                         ", ".join(failed) or "none", f"< {target:.0f} s",
                         "yes" if seconds < target else "NO"])
    notes = [f"median of {args.runs} runs each: `python -m rotation gate --json` "
             "as a subprocess (interpreter start included); baseline: a fresh interpreter "
             "loading and validating every stack file of the same repository",
             "exit/failed checks are reported as the gate printed them; the timing target "
             "holds either way"]
    emit("The PR gate at fleet scale", ["repository", "stack files", "static secrets", "runs",
                                         "gate s", "baseline s", "ratio", "exit",
                                         "failed checks", "target", "met"],
         rows, notes, args.json, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
