"""``rotation reload``: restarts once per workload, in plan order, on a real kube-apiserver.

The workloads are Deployment/StatefulSet objects on the API server (no kubelet runs, so
no pod ever starts): a restart is the ``kubectl.kubernetes.io/restartedAt`` annotation on
the pod template, which bumps the object's ``metadata.generation`` by exactly one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kernel.spec import load_stack_file
from rotation.commands.reload import PlannedRotation, restart_order
from tests.conftest import REPO_ROOT
from tests.kubeserver import KubeApiServer, path_with_toolchain

SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"
FEED = "secret/services/ingestion/market-data-feed"
HMAC = "secret/services/analytics/warehouse-hmac"


def reload_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path_with_toolchain()}
    return subprocess.run([sys.executable, "-m", "rotation", "reload", "--stack", "local",
                           "--repo", str(REPO_ROOT), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, check=False, timeout=300)


def plan_file(tmp_path: Path, rotations: list[tuple[str, list[str]]]) -> Path:
    """A ``plan --json`` document with these (secret, consumers) rotations of local."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"base": "HEAD~1", "head": "working tree", "ok": True,
                                "findings": [], "rotations": [
                                    {"stack": "local", "secret": s, "consumers": c,
                                     "restarts": []} for s, c in rotations]}))
    return path


def test_each_workload_restarts_once_in_first_seen_order() -> None:
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    order, others = restart_order(spec, "test", [
        PlannedRotation(FEED, ("ingestion",)), PlannedRotation(SIGNING, ("execution",)),
        PlannedRotation(BROKER, ("execution",)), PlannedRotation(HMAC, ("analytics",))])
    assert [(w.ref, w.secrets) for w in order] == [
        ("market-data/StatefulSet/ingestion", [FEED]),
        ("trading/Deployment/execution-connector", [SIGNING, BROKER])]
    assert others == [{"service": "analytics", "by": "vso",
                       "reason": "VSO restarts it (rolloutRestartTargets)"}]


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "plan.json: line 1: not JSON"),
    ('{"rotations": {}}', "plan.json: rotations: missing or not a list"),
    ('{"rotations": [{"stack": "local", "secret": "x"}]}',
     "plan.json: rotations[0].consumers: missing or not a list"),
    ('{"rotations": [{"stack": "local", "secret": "x", "consumers": ["nobody"]}]}',
     "consumer 'nobody' is not a service of Pulumi.local.yaml"),
])
def test_a_bad_plan_file_is_a_usage_error_naming_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(text)
    proc = reload_cli("--from-plan", str(plan), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def generations(kube: KubeApiServer) -> dict[str, tuple[int, str | None]]:
    out = {}
    for kind, ns, name in (("deployment", "trading", "execution-connector"),
                           ("statefulset", "market-data", "ingestion"),
                           ("deployment", "analytics", "analytics-worker")):
        obj: Any = kube.get(kind, name, ns)
        annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
        out[name] = (obj["metadata"]["generation"],
                     annotations.get("kubectl.kubernetes.io/restartedAt"))
    return out


@pytest.mark.integration
def test_reload_restarts_each_affected_workload_once_on_the_api_server(
    kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    before = generations(kube_apiserver)
    plan = plan_file(tmp_path, [(SIGNING, ["execution"]), (FEED, ["ingestion"]),
                                (BROKER, ["execution"]), (HMAC, ["analytics"])])
    proc = reload_cli("--json", "--from-plan", str(plan), "--kubeconfig",
                      str(kube_apiserver.kubeconfig), cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, (report, proc.stderr)
    assert [r["workload"] for r in report["restarted"]] == [
        "trading/Deployment/execution-connector", "market-data/StatefulSet/ingestion"]
    after = generations(kube_apiserver)
    for name in ("execution-connector", "ingestion"):
        assert after[name][0] == before[name][0] + 1, (name, before, after)
        assert after[name][1] is not None
    # analytics is restarted by VSO (rolloutRestartTargets): reload leaves it alone.
    assert after["analytics-worker"] == before["analytics-worker"]
    assert report["not_restarted"][0]["service"] == "analytics"


@pytest.mark.integration
def test_reload_stops_at_a_missing_workload_and_says_what_remains(
    kube_apiserver: KubeApiServer, tmp_path: Path
) -> None:
    kube_apiserver.kubectl("delete", "statefulset", "ingestion", "-n", "market-data")
    try:
        plan = plan_file(tmp_path, [(FEED, ["ingestion"]), (SIGNING, ["execution"])])
        proc = reload_cli("--json", "--from-plan", str(plan), "--kubeconfig",
                          str(kube_apiserver.kubeconfig), cwd=tmp_path)
        report = json.loads(proc.stdout)
        assert proc.returncode == 1
        assert report["restarted"] == []
        assert "statefulset" in report["failures"][0].lower()
        assert report["remaining"] == ["trading/Deployment/execution-connector"]
    finally:
        from tests.kubeserver import workload_document

        kube_apiserver.apply([workload_document("StatefulSet", "ingestion", "market-data",
                                                "ingestion")])


def test_nothing_rotated_restarts_nothing(tmp_path: Path) -> None:
    plan = plan_file(tmp_path, [])
    proc = reload_cli("--from-plan", str(plan), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to reload" in proc.stdout
