"""Wall time of the offline gate (`python -m rotation gate`) on this repository.

Prints the median of several in-process runs (the scan keeps no cache: every
run is what a fresh CI checkout pays), one end-to-end CLI run (interpreter
start included), and each as a ratio to a baseline measured in the same
process: loading and validating the four stack files, the least any gate must
do. Ratios survive a busy machine better than seconds do. A pull request that edits a policy file
also pays for the capability diff (a throwaway ``bao server -dev``, both
revisions' policies, ``sys/capabilities`` per principal): that is timed on a
clone of this repository with one policy widened. Target: the gate under 10 s.

    .venv/bin/python bench/gate_wall_time.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kernel.spec import load_stack_file  # noqa: E402
from rotation.gates.offline import run_gate  # noqa: E402
from rotation.gates.secret_scan import tracked_files  # noqa: E402

TARGET_SECONDS = 10.0


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def baseline() -> None:
    for stack in ("prod", "staging", "dr", "local"):
        load_stack_file(REPO / f"Pulumi.{stack}.yaml")


POLICY_EDIT = ("policies/acl/tradepulse-analytics.hcl", 'path "secret/data/services/analytics/*" {',
               'path "secret/data/*" {')


def policy_edit_clone(workdir: Path) -> Path:
    """Clone this repository's HEAD and widen one policy in the clone's working tree."""
    clone = workdir / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    name, old, new = POLICY_EDIT
    path = clone / name
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    return clone


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    args = parser.parse_args()
    files = tracked_files(REPO)
    lines = sum(len((REPO / f).read_bytes().splitlines()) for f in files)
    baseline()  # warm imports and the spec model, as the gate's own first step does

    def gate() -> None:
        report = run_gate(REPO, "HEAD", None)
        if not report.ok:
            raise SystemExit(f"the gate fails on this repository: {report.to_json()['failed']}")

    base = median_seconds(baseline, max(args.runs, 5))
    gate_s = median_seconds(gate, args.runs)
    start = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "rotation", "gate", "--repo", str(REPO)],
                         cwd=REPO, capture_output=True, text=True, check=False)
    cli_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="gate-bench-clone-") as workdir:
        clone = policy_edit_clone(Path(workdir))

        def with_engine() -> None:
            report = run_gate(clone, "HEAD", None, acknowledge=frozenset({"privilege"}))
            plan = report.check("rotation-plan")
            if not report.ok or not any("capabilities:" in n for n in plan.notes):
                raise SystemExit(f"the policy-edit gate did not run the capability diff: "
                                 f"{report.to_json()['failed']} {plan.notes}")

        engine_s = median_seconds(with_engine, args.runs)
    if cli.returncode != 0:
        print(cli.stdout + cli.stderr, file=sys.stderr)
        return 1
    print(f"gate wall time on {REPO.name}: {len(files)} tracked files, {lines} lines; "
          f"median of {args.runs} runs (baseline: {max(args.runs, 5)})")
    print(f"  baseline: load + validate the 4 stack files        {base:6.2f} s")
    print(f"  gate, in-process (every file scanned)              {gate_s:6.2f} s  "
          f"{gate_s / base:5.1f}x baseline")
    print(f"  python -m rotation gate (CLI, 1 run)               {cli_s:6.2f} s  "
          f"{cli_s / base:5.1f}x baseline")
    print(f"  gate, a policy edited (capability diff)            {engine_s:6.2f} s  "
          f"{engine_s / base:5.1f}x baseline")
    cold_s = gate_s
    verdict = "PASS" if max(cold_s, cli_s, engine_s) < TARGET_SECONDS else "FAIL"
    print(f"target: gate < {TARGET_SECONDS:.0f} s -> {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
