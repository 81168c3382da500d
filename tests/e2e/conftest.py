"""End-to-end fixtures: the real Pulumi engine (tools/toolchain) against real servers.

Every test here runs ``pulumi`` for real, in a workspace made by
``tools/localenv.py`` with a file backend under the test's temp directory.
Without the toolchain the tests are skipped locally and fail in CI (a skip
is a failure there: see tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from infra.audit_config import render_audit_hcl
from kernel.spec import EnvironmentSpec, parse_spec
from kernel.spec.stackfile import parse_yaml
from tests.servers import start_openbao
from tools.localenv import (
    REPO_ROOT,
    SPEC_KEY,
    Workspace,
    init_workspace,
    render_only,
    set_kubernetes_secrets,
    set_stack_secrets,
    use_cluster,
)

REQUIRED_PLUGINS = {"kubernetes", "random"}


def installed_plugins(pulumi: str) -> set[str]:
    """Names of the resource plugins the CLI has installed."""
    listed = subprocess.run([pulumi, "plugin", "ls", "--json"], capture_output=True, text=True,
                            check=True)
    return {p["name"] for p in json.loads(listed.stdout or "[]")}


@pytest.fixture(scope="session")
def engine() -> str:
    """The pulumi CLI with the kubernetes and random plugins installed."""
    found = shutil.which("pulumi")
    if found is None:
        message = "pulumi not on PATH: make toolchain && source tools/toolchain/env.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    missing = REQUIRED_PLUGINS - installed_plugins(found)
    if missing:
        pytest.fail(f"pulumi plugins missing: {sorted(missing)} (make toolchain)")
    return found


def git_init(root: Path) -> None:
    """Make the workspace a git checkout so bump/plan/verify see diffs."""
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.name", "E2E Operator"], check=True)
    subprocess.run([*git, "config", "user.email", "e2e@tradepulse.test"], check=True)
    # infra/ is a link to the repository; policies/ is a copy the plan reads at each revision.
    (root / ".gitignore").write_text("infra\n__pycache__/\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workspace"], check=True)


LOCAL = "Pulumi.local.yaml"


def local_spec(text: str) -> EnvironmentSpec:
    """The spec of a text of the local stack file (validated, as the program reads it)."""
    return parse_spec(parse_yaml(text).data["config"][SPEC_KEY], source=LOCAL, stack="local")


@contextmanager
def local_stack(tmp: Path, postgres: Any, *, spec_text: str | None = None,
                cluster: Any = None,
                ) -> Iterator[tuple[Workspace, Any, Callable[[dict[str, Any]], None]]]:
    """A new OpenBao and a workspace for the local stack (``spec_text``, default the file).

    OpenBao runs with the stack's audit devices and without dev mode's ``secret/``
    (the stack declares and owns it). The workspace's copy of the stack file points at
    that server, and at ``cluster`` (a :class:`tests.kubeserver.KubeApiServer`) when
    one is given, else renders delivery to ``tmp/manifests``. Yields (workspace,
    server, the edit that adapts a stack file's spec to both, for later syncs);
    stops the server afterwards. Nothing is applied: the test runs ``pulumi up``.
    """
    text = spec_text if spec_text is not None else (REPO_ROOT / LOCAL).read_text()
    spec = local_spec(text)
    workdir = tmp / "openbao"
    (workdir / ".local" / "openbao").mkdir(parents=True)
    server = start_openbao(workdir, extra_config=render_audit_hcl(spec.audit.devices))
    try:
        server.client().sys.disable_secrets_engine("secret")

        def edit(data: dict[str, Any]) -> None:
            data["vault"]["address"] = server.address
            if cluster is not None:
                use_cluster(data, cluster.address, cluster.ca_pem, cluster.context)
            else:
                render_only(data, str(tmp / "manifests"))  # no cluster in this test

        ws = init_workspace(tmp / "ws", "local", backend_dir=tmp / "state",
                            passphrase="e2e", vault_addr=server.address,
                            vault_token=server.root_token, spec_text=text, edit=edit,
                            base_env=cluster.env() if cluster is not None else None)
        set_stack_secrets(ws, spec, postgres)
        if cluster is not None:
            set_kubernetes_secrets(ws, spec, cluster, 3600)
        yield ws, server, edit
    finally:
        server.stop()
