"""tools/toolchain/build.sh's driver: lanes side by side, stamps, installs and failures.

A real cold build takes tens of minutes, so this runs a copy of the script with a fake
``go`` (and the fake ``pulumi`` CLI that fake ``go build`` writes) on ``PATH``: each fake
build logs when it started and ended, and can wait at a barrier until a number of builds
have started, which is what shows the lanes running side by side on a slow machine. What
the real ``go`` compiles is exercised by the cold build itself (``make fresh-check``);
here only the script's own logic is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("pulumi", "language-python", "kubernetes", "random", "vault", "kube-apiserver")

# The fake `go`: enough of `go env`, `go list -m`, `go mod download -json`, `go mod edit`
# and `go build` for build.sh. Builds log "<start> <end> <dir> <builds started by then>"
# to $FAKE_GO_LOG.
FAKE_GO = '''\
import json, os, re, sys, time
args = sys.argv[1:]
cwd = os.getcwd()
if args[:2] == ["env", "GOVERSION"]:
    print("go1.99-fake"); sys.exit(0)
if args[:2] == ["list", "-m"]:
    mod = args[-1]
    text = open("go.mod").read()
    print(re.search(r"^\\s*" + re.escape(mod) + r" (\\S+)", text, re.M).group(1)); sys.exit(0)
if args[:2] == ["mod", "download"]:
    mod = args[-1].split("@")[0]
    d = os.path.join(os.environ["FAKE_GO_MODS"], mod.replace("/", "_"))
    for rel in ("python/cmd/pulumi-language-python-exec",
                "cmd/pulumi-resource-kubernetes/schema.json",
                "cmd/pulumi-resource-kubernetes/terraform-mapping.json"):
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "w") as f:
            f.write("{}")
    print(json.dumps({"Path": mod, "Dir": d})); sys.exit(0)
if args[:2] == ["mod", "edit"]:
    sys.exit(0)
if args[0] == "build":
    out = args[args.index("-o") + 1]
    pkgs = [a for a in args[args.index("-o") + 2:]]
    start = time.time()
    if os.path.basename(cwd) == os.environ.get("FAKE_GO_FAIL"):
        print("go: example.com/refused@v1.0.0: reading https://proxy.golang.org/: 403 Forbidden",
              file=sys.stderr)
        sys.exit(1)
    # A barrier: wait (up to a minute) until FAKE_GO_BARRIER builds have started, so builds
    # that run side by side are seen to, however slow the machine is.
    started = os.environ["FAKE_GO_STARTED"]
    os.makedirs(started, exist_ok=True)
    open(os.path.join(started, os.path.basename(cwd)), "w").close()
    want = int(os.environ.get("FAKE_GO_BARRIER", "0"))
    while len(os.listdir(started)) < want and time.time() - start < 60:
        time.sleep(0.05)
    seen = len(os.listdir(started))
    time.sleep(float(os.environ.get("FAKE_GO_SLEEP", "0")))
    if os.path.basename(cwd) == "pulumi":  # CPU time that build.sh must report
        while time.process_time() < 1.2:
            pass
    outs = [os.path.join(out, p.rsplit("/", 1)[-1]) for p in pkgs] if out.endswith("/") else [out]
    for o in outs:
        with open(o, "w") as f:
            f.write(os.environ["FAKE_BINARY"])
        os.chmod(o, 0o755)
    with open(os.environ["FAKE_GO_LOG"], "a") as f:
        f.write(f"{start} {time.time()} {os.path.basename(cwd)} {seen}\\n")
    sys.exit(0)
sys.exit(f"fake go: unexpected arguments {args}")
'''

# What every fake binary does: `-gen-schema FILE` writes a schema; as the pulumi CLI,
# `plugin install resource NAME VERSION --file F` copies F (a file or a directory).
FAKE_BINARY = f'''#!{sys.executable}
import os, shutil, sys
args = sys.argv[1:]
if args[:1] == ["-gen-schema"]:
    open(args[1], "w").write('{{"name": "vault"}}'); sys.exit(0)
if args[:2] == ["plugin", "rm"]:
    sys.exit(0)
if args[:2] == ["plugin", "install"]:
    kind, name, version, src = args[2], args[3], args[4], args[args.index("--file") + 1]
    dest = os.path.join(os.environ["PULUMI_HOME"], "plugins", f"{{kind}}-{{name}}-v{{version}}")
    shutil.rmtree(dest, ignore_errors=True)
    if os.path.isdir(src):
        shutil.copytree(src, dest)
    else:
        os.makedirs(dest)
        shutil.copy2(src, os.path.join(dest, f"pulumi-{{kind}}-{{name}}"))
    sys.exit(0)
sys.exit(0)
'''


def run_build(tmp_path: Path, *args: str, fail: str = "", jobs: str = "", barrier: int = 0,
              sleep: str = "0") -> subprocess.CompletedProcess[str]:
    """Run the copied build.sh with the fake go into tmp_path/cache."""
    here = tmp_path / "toolchain"
    if not here.exists():
        shutil.copytree(REPO_ROOT / "tools" / "toolchain", here,
                        ignore=shutil.ignore_patterns("*-embed.json"))
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir(exist_ok=True)
    go = fake_bin / "go"
    go.write_text(f"#!{sys.executable}\n{FAKE_GO}")
    go.chmod(0o755)
    # Not TRADEPULSE_PHASE_LOG: the fake builds' lines would land in .ci/run's summary.
    env = {k: v for k, v in os.environ.items() if k not in ("GOFLAGS", "PULUMI_HOME",
                                                        "TRADEPULSE_PHASE_LOG")}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}",
               TRADEPULSE_TOOLCHAIN_DIR=str(tmp_path / "cache"),
               FAKE_GO_LOG=str(tmp_path / "builds.log"), FAKE_GO_MODS=str(tmp_path / "mods"),
               FAKE_GO_STARTED=str(tmp_path / "started"), FAKE_GO_BARRIER=str(barrier),
               FAKE_GO_FAIL=fail, FAKE_GO_SLEEP=sleep, FAKE_BINARY=FAKE_BINARY)
    if jobs:
        env["TRADEPULSE_TOOLCHAIN_JOBS"] = jobs
    # build.sh sends all its output through one tee (stdout and stderr together).
    return subprocess.run(["bash", str(here / "build.sh"), *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, check=False)


def builds(tmp_path: Path) -> dict[str, tuple[float, float, int]]:
    """Start, end and builds started by then of each fake `go build`, by its directory."""
    out: dict[str, tuple[float, float, int]] = {}
    for line in (tmp_path / "builds.log").read_text().splitlines():
        start, end, where, seen = line.split()
        out[where] = (float(start), float(end), int(seen))
    return out


def most_at_once(spans: list[tuple[float, float, int]]) -> int:
    """The largest number of the spans that were running at the same instant."""
    events = sorted([(s[0], 1) for s in spans] + [(s[1], -1) for s in spans])
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_lanes_run_side_by_side_and_shared_lanes_in_order(tmp_path: Path) -> None:
    proc = run_build(tmp_path, barrier=4)
    assert proc.returncode == 0, proc.stdout
    b = builds(tmp_path)
    # One `go build` per component (kube-apiserver and kubectl together, vault linked once).
    assert sorted(b) == ["kube-apiserver", "kubernetes", "language-python", "pulumi",
                         "tfproviders", "vault"]
    # Four lanes side by side: each lane's first build saw the other three start.
    assert most_at_once(list(b.values())) == 4, b
    # Components that share compiled packages build one after the other in their lane.
    assert b["pulumi"][1] <= b["language-python"][0], b
    assert b["vault"][1] <= b["tfproviders"][0], b
    cache = tmp_path / "cache"
    for c in COMPONENTS:
        assert (cache / "stamps" / c).read_text().startswith(c + " "), c
        assert f"] {c}: built in " in proc.stdout, proc.stdout
    assert (cache / "bin" / "kubectl").is_file()
    vault = cache / "pulumi-home" / "plugins" / "resource-vault-v7.14.0"
    assert sorted(p.name for p in vault.iterdir()) == ["pulumi-resource-vault", "schema.json"]
    assert re.search(r"\] pulumi: built in \d+ s \(CPU [1-9]\d* s\)", proc.stdout), proc.stdout
    assert not (cache / "build").exists()
    again = run_build(tmp_path)
    assert again.returncode == 0
    assert "toolchain up to date" in again.stdout


def test_one_lane_at_a_time_with_jobs_1(tmp_path: Path) -> None:
    proc = run_build(tmp_path, jobs="1", sleep="0.2")
    assert proc.returncode == 0, proc.stdout
    spans = list(builds(tmp_path).values())
    assert len(spans) == 6
    assert most_at_once(spans) == 1, spans


def test_a_failing_lane_names_the_refused_module_and_fails(tmp_path: Path) -> None:
    proc = run_build(tmp_path, fail="vault")
    assert proc.returncode == 1
    assert "    vault: go: example.com/refused@v1.0.0: reading" in proc.stdout
    assert "building vault failed (exit 1" in proc.stdout
    assert "not built: vault random;" in proc.stdout
    assert "=== failed after" in proc.stdout
    stamps = tmp_path / "cache" / "stamps"
    # The lane stops at its failure; the other lanes' components are built and stamped.
    assert not (stamps / "vault").exists() and not (stamps / "random").exists()
    for c in ("pulumi", "language-python", "kubernetes", "kube-apiserver"):
        assert (stamps / c).is_file(), c


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_jobs_must_be_a_positive_integer(tmp_path: Path, jobs: str) -> None:
    proc = run_build(tmp_path, jobs=jobs)
    assert proc.returncode == 2
    assert "TRADEPULSE_TOOLCHAIN_JOBS must be a positive integer" in proc.stdout
