"""Stack-file load: this checkout's ``load_stack`` against another checkout's, in the same minutes.

Each checkout generates its own fleet repository with its own
``bench/common.write_fleet_repo`` (the spec format may differ between the two)
and times ``rotation.stacks.load_stack(root, "prod")``: reading, parsing,
validating and cross-checking ``Pulumi.prod.yaml``. Each checkout runs in its own
interpreter with its own ``PYTHONPATH``, the sizes alternate between the two, and
the table prints each median with the ratio ``this / other``. Without
``--against`` only this checkout is measured.

    .venv/bin/python bench/load_stack.py --against ../old-checkout [--services 100,500] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, emit

# Run inside the measured checkout (its bench/ and package on sys.path): one size, N runs.
CHILD = """
import json, statistics, sys, tempfile, time
from pathlib import Path
from common import write_fleet_repo
from rotation.stacks import load_stack
services, runs = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory(prefix="tp-load-stack-") as tmp:
    root = write_fleet_repo(Path(tmp) / "repo", services)
    spec = load_stack(root, "prod")  # warm-up, and the count
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        load_stack(root, "prod")
        times.append(time.perf_counter() - start)
print(json.dumps({"secrets": len(spec.static_secrets), "median": statistics.median(times)}))
"""


def measure(tree: Path, services: int, runs: int) -> dict[str, float]:
    """Run :data:`CHILD` in ``tree``; return its secrets count and median seconds."""
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'bench'}"}
    out = subprocess.run([sys.executable, "-c", CHILD, str(services), str(runs)], cwd=tree,
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"load_stack in {tree} failed: {out.stderr.strip()[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--services", default="100,500", help="fleet sizes, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="load_stack runs per size (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    other = args.against.resolve() if args.against else None
    if other is not None and not (other / "rotation" / "stacks.py").is_file():
        raise SystemExit(f"--against {other}: not a checkout of this repository "
                         "(no rotation/stacks.py)")
    rows, data = [], []
    for services in (int(s) for s in args.services.split(",")):
        mine = measure(REPO, services, args.runs)
        theirs = measure(other, services, args.runs) if other is not None else None
        row: list[object] = [services, int(mine["secrets"]), f"{mine['median'] * 1000:.0f}"]
        if theirs is not None:
            row += [int(theirs["secrets"]), f"{theirs['median'] * 1000:.0f}",
                    f"{mine['median'] / theirs['median']:.2f}x"]
        rows.append(row)
        data.append({"services": services, "this": mine, "other": theirs})
    headers = ["services", "secrets", "this checkout ms"]
    if other is not None:
        headers += ["secrets (other)", f"{other.name} ms", "this / other"]
    emit("Stack-file load (load_stack of Pulumi.prod.yaml)", headers, rows,
         [f"median of {args.runs} runs per size, after one warm-up; each checkout in its own "
          "interpreter, generating its own fleet"], args.json,
         {"against": str(other) if other else None, "sizes": data})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
