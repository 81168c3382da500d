"""Engine benchmark: the real Pulumi engine on generated fleets, against a bare pulumi-vault floor.

What an SRE waits for is the engine, not the program under mocks. For each
fleet size (default 100 and 300 services, the fleet of ``bench/common.py``:
each service with its ACL policy, Kubernetes auth role, database role, Vault
Secrets Operator delivery rendered to a directory, and 5 static secrets), two
stacks are applied with the toolchain's ``pulumi`` against two fresh OpenBao
dev servers (one each, so neither sees the other's mounts):

* **program**: the repository's Pulumi program (``infra/`` and ``kernel/``,
  copied with the fleet's policy files beside them), the spec in stack config, provided secrets
  and database secrets as config secrets;
* **floor**: a bare pulumi-vault program registering the same resources with
  literal inputs (``register_floor`` of ``bench/program_scale.py``), the same
  project name, so the URNs are the same too; the benchmark refuses to report
  if the two stacks' URN sets differ.

Then, interleaved (floor, program, floor, program, ...) so load on the shared
machine hits both alike, it times: ``pulumi preview`` with nothing to do;
``pulumi up`` of one rotation (a generated secret's version bumped), whole
stack; ``pulumi up --refresh`` with nothing to do; and on the program's stack
the same rotation applied the way the deploy workflow and ``make up-apply`` do
it (``--target`` the plan's URNs, :mod:`kernel.targets`, with the program
registering only the rotated secret: :func:`kernel.targets.rotation_only_secrets`),
whose whole-stack ``preview --expect-no-changes`` check is timed as well.
Creating each fleet is setup, run with ``PULUMI_SKIP_CHECKPOINTS`` (the state
written once at the end instead of after every step).
The database connection is declared with ``verify_connection: false`` on both
sides (no PostgreSQL: nothing here logs in), audit goes to one file device
(OpenBao started with ``unsafe_allow_api_audit_creation``, the ``vault``
flavour's API path), and JWT auth uses a local validation key (no discovery
URL fetched from the internet), Kubernetes auth the local stack's placeholder CA.

Prints medians, the ratio program/floor, the ms per resource as the fleet
grows, and targeted vs whole-stack rotation. Targets: program within 1.15x of
the floor on preview and up; flat ms/resource; targeted rotation >= 5x faster
than the whole-stack one on the 300-service fleet.

    source tools/toolchain/env.sh
    .venv/bin/python bench/engine.py [--sizes 100,300] [--runs 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, emit, fleet_spec, median, write_policy_dir
from program_scale import PROVIDED_VALUE, _db_secret_values, floor_policy_texts

sys.path.insert(0, str(REPO))
from kernel.paths import PROJECT_NAME, SPEC_CONFIG_KEY
from kernel.spec import parse_spec
from kernel.targets import rotation_only_secrets, rotation_urns
from tests.servers import OpenBaoServer, start_openbao
from tools.localenv import Workspace, render_only
from tools.targeted_apply import rotation_only_env, target_args

STACK = "prod"
TARGET_RATIO = 1.15
TARGETED_SPEEDUP = 5.0
SPEEDUP_SIZE = 300
# Rendered manifests have no cluster to be read back from: refresh reads the Vault side.
DELIVERY_GLOB = f"urn:pulumi:{STACK}::{PROJECT_NAME}::tradepulse:vault:SecretDelivery$**"
SETUP_ENV = {"PULUMI_SKIP_CHECKPOINTS": "true"}
ROTATED = 0  # svc-0000's secret-0: generated (a RandomPassword replaced, a SecretV2 written)
FLOOR_MAIN = '''"""The floor: register_floor (bench/program_scale.py) on spec.json."""
import json
import sys
from pathlib import Path

sys.path.insert(0, {bench!r})
from program_scale import register_floor

doc = json.loads((Path(__file__).parent / "spec.json").read_text())
register_floor(doc["data"], doc["texts"])
'''


def bench_spec(n: int, address: str, side_dir: Path) -> dict[str, Any]:
    """Return the fleet's spec pointed at one server, with nothing that leaves loopback."""
    data = fleet_spec(n)
    data["vault"]["address"] = address
    device = dict(data["audit"]["devices"][0])
    device["options"] = {**device["options"], "file_path": str(side_dir / "audit.log")}
    data["audit"]["devices"] = [device]
    local = yaml.safe_load((REPO / "Pulumi.local.yaml").read_text())["config"][SPEC_CONFIG_KEY]
    jwt = data["auth"]["jwt"]
    jwt.pop("oidc_discovery_url", None)
    jwt["validation_pubkeys"] = local["auth"]["jwt"]["validation_pubkeys"]
    # Outside a cluster Vault needs a CA to configure Kubernetes auth: the local stack's
    # placeholder (public) CA.
    data["auth"]["kubernetes"]["ca_cert"] = local["auth"]["kubernetes"]["ca_cert"]
    data["database"]["connection"]["verify_connection"] = False
    for secret in data["static_secrets"]:  # a fresh Vault: every secret starts at version 1
        secret["version"] = 1
    render_only(data, str(side_dir / "manifests"))
    return data


def _project(root: Path, main: str) -> None:
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({
        "name": PROJECT_NAME, "runtime": {"name": "python", "options": {
            "toolchain": "pip", "virtualenv": str(REPO / ".venv")}}, "main": main}))


def _init(ws: Workspace) -> None:
    subprocess.run(["pulumi", "stack", "init", STACK, "--secrets-provider", "passphrase",
                    "--non-interactive"], cwd=ws.root, env=ws.env(), capture_output=True,
                   text=True, check=True)


def program_workspace(root: Path, n: int, data: dict[str, Any],
                      server: OpenBaoServer) -> Workspace:
    """The repository's program (a copy of ``infra/`` beside the fleet's policies)."""
    root.mkdir(parents=True)
    for package in ("infra", "kernel"):
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    write_policy_dir(root / "policies" / "acl", n)
    _project(root, "infra/")
    # The copies shadow the editable install, so kernel.paths finds this policy directory.
    ws = Workspace(root, STACK, root / "state", "bench", server.address, server.root_token,
                   base_env={"PYTHONPATH": str(root)})
    ws.backend_dir.mkdir()
    ws.stack_file.write_text(yaml.safe_dump({"config": {SPEC_CONFIG_KEY: data}},
                                            sort_keys=False))
    _init(ws)
    conn = data["database"]["connection"]
    url, user, password = _db_secret_values()
    values = {conn["url_secret"]: url, conn["username_secret"]: user,
              conn["password_secret"]: password}
    values.update({s["config_secret"]: PROVIDED_VALUE for s in data["static_secrets"]
                   if s.get("config_secret")})
    # Bench values only (the floor's literals), so argv is fine; one call, not one per key.
    ws.pulumi("config", "set-all", *(a for k, v in values.items()
                                     for a in ("--secret", f"{PROJECT_NAME}:{k}={v}")))
    return ws


def floor_workspace(root: Path, n: int, data: dict[str, Any],
                    server: OpenBaoServer) -> Workspace:
    """The bare pulumi-vault program: ``register_floor`` with the spec as literal data."""
    (root / "floor").mkdir(parents=True)
    _project(root, "floor/")
    policy_dir = write_policy_dir(root / "acl", n)
    (root / "floor" / "__main__.py").write_text(
        FLOOR_MAIN.format(bench=str(Path(__file__).resolve().parent)))
    write_floor_spec(root, data, floor_policy_texts(data, policy_dir))
    ws = Workspace(root, STACK, root / "state", "bench", server.address, server.root_token)
    ws.backend_dir.mkdir()
    _init(ws)
    return ws


def write_floor_spec(root: Path, data: dict[str, Any], texts: dict[str, str] | None = None) -> None:
    """Write the floor's spec.json (keeping its policy texts when ``texts`` is None)."""
    path = root / "floor" / "spec.json"
    if texts is None:
        texts = json.loads(path.read_text())["texts"]
    path.write_text(json.dumps({"data": data, "texts": texts}))


def bump(side: str, ws: Workspace, data: dict[str, Any]) -> None:
    """Raise the rotated secret's version by one in the side's spec."""
    data["static_secrets"][ROTATED]["version"] += 1
    if side == "floor":
        write_floor_spec(ws.root, data)
        return
    doc = yaml.safe_load(ws.stack_file.read_text())
    doc["config"][SPEC_CONFIG_KEY] = data
    ws.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))


def timed_pulumi(ws: Workspace, *args: str, extra_env: dict[str, str] | None = None) -> float:
    """Run one pulumi command (it must succeed); return its wall seconds."""
    start = time.perf_counter()
    ws.pulumi(*args, timeout=3600, extra_env=extra_env)
    return time.perf_counter() - start


def urns(ws: Workspace) -> set[str]:
    """The URNs of the stack's state (the resources the engine manages)."""
    exported = json.loads(ws.pulumi("stack", "export").stdout)
    return {r["urn"] for r in exported["deployment"]["resources"]}


def measure_size(n: int, runs: int, refresh_runs: int, tmp: Path) -> dict[str, Any]:
    """Apply both stacks for ``n`` services and time every operation, interleaved."""
    base = tmp / f"fleet-{n}"
    servers: dict[str, OpenBaoServer] = {}
    try:
        for side in ("floor", "program"):
            workdir = base / f"{side}-bao"
            servers[side] = start_openbao(
                workdir, extra_config="unsafe_allow_api_audit_creation = true\n")
            servers[side].client().sys.disable_secrets_engine("secret")
        datas = {side: bench_spec(n, servers[side].address, base / side) for side in servers}
        ws = {"floor": floor_workspace(base / "floor", n, datas["floor"], servers["floor"]),
              "program": program_workspace(base / "program", n, datas["program"],
                                           servers["program"])}
        times: dict[str, list[float]] = {}

        def record(key: str, seconds: float) -> None:
            times.setdefault(key, []).append(seconds)
            print(f"engine bench: {n} services: {key} {seconds:.1f} s", file=sys.stderr)

        for side in ("floor", "program"):
            # Setup, not a measured operation: without intermediate checkpoints (the
            # engine rewrites the whole snapshot after every step, so a create of n
            # resources writes O(n^2) bytes) and with the final state written once.
            record(f"{side}_create", timed_pulumi(ws[side], "up", "--yes", "--skip-preview",
                                                  extra_env=SETUP_ENV))
        floor_urns, program_urns = urns(ws["floor"]), urns(ws["program"])
        if floor_urns != program_urns:
            odd = sorted(floor_urns ^ program_urns)[:5]
            raise SystemExit(f"{n} services: the floor's stack is not the program's: {odd}")
        for _ in range(runs):
            for side in ("floor", "program"):
                record(f"{side}_preview", timed_pulumi(ws[side], "preview"))
            for side in ("floor", "program"):
                bump(side, ws[side], datas[side])
                record(f"{side}_up", timed_pulumi(ws[side], "up", "--yes", "--skip-preview"))
            # The same rotation, applied as the deploy workflow applies it.
            bump("program", ws["program"], datas["program"])
            spec = parse_spec(datas["program"], source="Pulumi.prod.yaml", stack=STACK,
                              policy_dir=base / "program" / "policies" / "acl")
            secret_id = spec.static_secrets[ROTATED].id
            rotated = rotation_urns(spec, STACK, "kv", secret_id)
            if rotation_only_secrets(spec, STACK, rotated) is None:
                raise SystemExit(f"{n} services: {secret_id} cannot be applied rotation-only")
            record("program_targeted", timed_pulumi(
                ws["program"], "up", "--yes", "--skip-preview",
                *target_args(rotated, dependents=False), extra_env=rotation_only_env(rotated)))
            record("program_check", timed_pulumi(ws["program"], "preview",
                                                 "--expect-no-changes"))
        for _ in range(refresh_runs):
            for side in ("floor", "program"):
                record(f"{side}_refresh", timed_pulumi(ws[side], "refresh", "--yes",
                                                       "--skip-preview", "--exclude",
                                                       DELIVERY_GLOB))
        count = len(program_urns)
    finally:
        for server in servers.values():
            server.stop()
    fig = {key: median(values) for key, values in times.items()}
    return {"services": n, "resources": count, "runs": runs, "refresh_runs": refresh_runs,
            **fig, "samples": times}


def _ratio(r: dict[str, Any], op: str) -> float:
    return float(r[f"program_{op}"]) / float(r[f"floor_{op}"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300", help="services per fleet, comma separated")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs per operation")
    parser.add_argument("--refresh-runs", type=int, default=None,
                        help="runs of up --refresh (default: --runs)")
    parser.add_argument("--quick", action="store_true",
                        help="a 2-service fleet, one run: proves the benchmark runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if shutil.which("pulumi") is None:
        print("error: pulumi not on PATH: source tools/toolchain/env.sh", file=sys.stderr)
        return 2
    sizes = [2] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = 1 if args.quick else args.runs
    refresh_runs = runs if args.refresh_runs is None else args.refresh_runs
    load = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="tp-engine-") as tmp:
        for n in sizes:
            results.append(measure_size(n, runs, refresh_runs, Path(tmp)))
    rows: list[list[object]] = []
    for r in results:
        speedup = float(r["program_up"]) / float(r["program_targeted"])
        ok = (_ratio(r, "preview") <= TARGET_RATIO and _ratio(r, "up") <= TARGET_RATIO
              and (r["services"] != SPEEDUP_SIZE or speedup >= TARGETED_SPEEDUP))
        refreshed = "floor_refresh" in r
        r.update(preview_ratio=_ratio(r, "preview"), up_ratio=_ratio(r, "up"),
                 refresh_ratio=_ratio(r, "refresh") if refreshed else None,
                 targeted_speedup=speedup, ok=ok)
        rows.append([
            r["services"], r["resources"], r["runs"],
            f"{r['floor_preview']:.1f}", f"{r['program_preview']:.1f}",
            f"{r['preview_ratio']:.2f}x",
            f"{r['floor_up']:.1f}", f"{r['program_up']:.1f}", f"{r['up_ratio']:.2f}x",
            *([f"{r['floor_refresh']:.1f}", f"{r['program_refresh']:.1f}",
               f"{r['refresh_ratio']:.2f}x"] if refreshed else ["-", "-", "-"]),
            f"{r['program_targeted']:.1f}", f"{speedup:.1f}x", f"{r['program_check']:.1f}",
            f"{r['program_preview'] / r['resources'] * 1000:.1f}",
            f"{r['program_up'] / r['resources'] * 1000:.1f}",
            f"{r['floor_create']:.0f} / {r['program_create']:.0f}",
            "yes" if ok else "NO"])
    notes = [
        f"load average when the run started: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(a shared machine: floor and program interleaved, medians of the runs column)",
        "floor = bare pulumi-vault program with literal inputs, same URNs (checked); "
        "program = infra/ with the spec in stack config; each against its own OpenBao",
        "up = whole-stack `pulumi up` of one rotation (a generated secret's version + 1); "
        "targeted = the same rotation with --target <plan URNs>, the program registering "
        "only the rotated secret (rotation-only); "
        "check = the whole-stack `preview --expect-no-changes` after it; refresh = "
        "`pulumi refresh --exclude <SecretDelivery children>` (rendered, no cluster to read)",
        f"targets: program/floor <= {TARGET_RATIO}x on preview and up; flat ms/resource; "
        f"targeted >= {TARGETED_SPEEDUP:.0f}x faster than whole-stack up at "
        f"{SPEEDUP_SIZE} services",
    ]
    if len(results) > 1:
        first, last = results[0], results[-1]
        for op in ("preview", "up"):
            growth = ((last[f"program_{op}"] / last["resources"])
                      / (first[f"program_{op}"] / first["resources"]))
            notes.append(f"program {op} s per resource at {last['services']} vs "
                         f"{first['services']} services: {growth:.2f}x (1.00x = linear)")
    emit("Real engine against a bare pulumi-vault floor",
         ["services", "resources", "runs", "floor preview s", "program preview s", "ratio",
          "floor up s", "program up s", "ratio", "floor refresh s", "program refresh s",
          "ratio", "targeted up s", "speedup", "check s", "preview ms/res", "up ms/res",
          "create s floor / program", "targets met"],
         rows, notes, args.json, {"results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
