"""Shared fixtures: Pulumi mocks (unit tests) and real servers (integration tests).

Unit tests run the program under ``pulumi.runtime.set_mocks``; the
:class:`RecordingMocks` keeps every registered resource so a test can compare
the exact set against the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STACKS = ("prod", "staging", "dr", "local")
CANARY_DB_PASSWORD = "CANARY-db-root-7c1e0f5b9a"  # planted; must never leave a secret
CANARY_PROVIDED = "CANARY-provided-3b9d2e71"  # planted provided-secret value


@dataclass
class Registered:
    """One resource the program registered under mocks."""

    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None


@dataclass
class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs back as outputs and remember every resource and invoke."""

    resources: list[Registered] = field(default_factory=list)
    calls: list[pulumi.runtime.MockCallArgs] = field(default_factory=list)
    call_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), args.provider))
        if args.typ == "pulumi:pulumi:StackReference":
            outputs = self.stack_outputs.get(args.name, {})
            return args.name, {"name": args.name, "outputs": outputs,
                               "secretOutputNames": list(outputs)}
        if args.typ == "random:index/randomPassword:RandomPassword":
            # Deterministic per (name, keepers), like a real regenerate-on-keeper-change.
            seed = json.dumps([args.name, args.inputs.get("keepers")], sort_keys=True)
            value = "gen-" + hashlib.sha256(seed.encode()).hexdigest()[: int(args.inputs["length"])]
            return f"{args.name}-id", {**args.inputs, "result": value}
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        self.calls.append(args)
        return self.call_results.get(args.token, {})

    def of_type(self, typ: str) -> dict[str, Registered]:
        return {r.name: r for r in self.resources if r.typ == typ}


@dataclass
class MockRun:
    """A mocks session: the recorder and the monitor (which knows every URN)."""

    mocks: RecordingMocks
    monitor: pulumi.runtime.mocks.MockMonitor

    @property
    def urns(self) -> list[str]:
        return list(self.monitor.resources)


@pytest.fixture(autouse=True)
def _main_thread_keeps_its_event_loop() -> Iterator[None]:
    """Fail the test that leaves the main thread without an event loop, not a later one.

    ``asyncio.run`` on the main thread sets its current loop to None when it
    ends, and every Pulumi mock test after it in the same process then fails
    with "There is no current event loop" (Pulumi's runtime asks for that
    loop): which tests fail depends on the order a process runs files in, so
    one process hid it and a test worker found it. Checked after each test.
    """
    yield
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())  # the tests after it still run
        pytest.fail("this test left the main thread without an event loop (asyncio.run on "
                    "it?): run asyncio.run in a thread of its own, as read_live does")


@pytest.fixture
def pulumi_mocks() -> Callable[..., MockRun]:
    """Return a factory that installs fresh mocks for ``stack`` (and config)."""

    def install(stack: str, config: dict[str, str] | None = None,
                secret_keys: list[str] | None = None) -> MockRun:
        mocks = RecordingMocks()
        monitor = pulumi.runtime.mocks.MockMonitor(mocks)
        # "organization" is what self-managed (file://, s3://) backends report.
        pulumi.runtime.set_mocks(mocks, project="tradepulse-vault", stack=stack, preview=False,
                                 organization="organization",
                                 monitor=monitor)
        pulumi.runtime.set_all_config(config or {}, secret_keys or [])
        return MockRun(mocks, monitor)

    return install


def audit_answer(devices: dict[str, str]) -> dict[str, Any]:
    """The provider's getSecret result for ``sys/audit`` with ``{path: type}`` enabled."""
    data = {f"{path}/": {"type": typ, "options": {}} for path, typ in devices.items()}
    return {"dataJson": json.dumps(data), "data": {}}


@pytest.fixture
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh OpenBao dev server for one test, with the local stack's audit stanzas."""
    from infra.audit_config import render_audit_hcl
    from kernel.spec import load_stack_file
    from tests.servers import start_openbao

    workdir = tmp_path_factory.mktemp("openbao")
    (workdir / ".local" / "openbao").mkdir(parents=True)
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    server = start_openbao(workdir, extra_config=render_audit_hcl(spec.audit.devices))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def raft_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One three-node OpenBao raft cluster for the session, with the local stack's audit devices.

    A test that kills, seals or stops nodes calls ``raft_cluster.heal()`` when
    it is done, so the next test finds three unsealed voters again.
    """
    from infra.audit_config import render_audit_hcl
    from kernel.spec import load_stack_file
    from tests.cluster import start_raft_cluster

    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    cluster = start_raft_cluster(tmp_path_factory.mktemp("raft"),
                                 extra_config=render_audit_hcl(spec.audit.devices),
                                 subdirs=(".local/openbao",))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(raft_cluster: Any) -> Iterator[Any]:
    """The session's raft cluster with an active node, healed after the test.

    Healed: every node the test killed, sealed or stopped is restarted and
    unsealed, so the next test finds three voters again.
    """
    raft_cluster.active()
    try:
        yield raft_cluster
    finally:
        raft_cluster.heal()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """One PostgreSQL cluster for the session (tests create their own roles/databases)."""
    from tests.servers import start_postgres, temporary_dir

    with temporary_dir("tp-postgres-") as workdir:
        server = start_postgres(workdir)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real kube-apiserver on etcd, bootstrapped for the local stack (one per module)."""
    from kernel.spec import load_stack_file
    from tests.kubeserver import bootstrap, start_kube_apiserver

    server = start_kube_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        bootstrap(server, load_stack_file(REPO_ROOT / "Pulumi.local.yaml"))
        yield server
    finally:
        server.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing may pass by not running."""
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        if reporter is not None:
            reporter.write_line(f"CI: {skipped} test(s) skipped; skips fail the run in CI",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def refused_url() -> Iterator[Callable[[], str]]:
    """Make ``http://127.0.0.1:<port>`` URLs that refuse every connection while the test runs."""
    from tests.servers import refused_port

    with contextlib.ExitStack() as held:
        yield lambda: f"http://127.0.0.1:{held.enter_context(refused_port())}"


@pytest.fixture
def stack_repo(tmp_path: Path) -> Path:
    """A throwaway git checkout with copies of the stack files and policies, committed."""
    import shutil
    import subprocess

    root = tmp_path / "repo"
    root.mkdir()
    for stack_file in REPO_ROOT.glob("Pulumi*.yaml"):
        shutil.copy2(stack_file, root / stack_file.name)
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    git = ["git", "-C", str(root), "-c", "user.name=Test Operator",
           "-c", "user.email=operator@tradepulse.test"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.name", "Test Operator"], check=True)
    subprocess.run([*git, "config", "user.email", "operator@tradepulse.test"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stacks"], check=True)
    return root
