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
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from tools.localenv import Workspace, init_workspace

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


def local_spec_editor(server: Any, render_dir: Path) -> Callable[[dict[str, Any]], None]:
    """Point the local spec at the test's server and render directory."""
    def edit(spec: dict[str, Any]) -> None:
        spec["vault"]["address"] = server.address
        spec["delivery"]["kubernetes"]["render_dir"] = str(render_dir)
    return edit


def git_init(root: Path) -> None:
    """Make the workspace a git checkout so bump/plan/verify see diffs."""
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.name", "E2E Operator"], check=True)
    subprocess.run([*git, "config", "user.email", "e2e@tradepulse.test"], check=True)
    (root / ".gitignore").write_text("infra\npolicies\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "workspace"], check=True)


def make_workspace(tmp: Path, server: Any, postgres: Any, *, stack: str = "local",
                   spec_text: str | None = None,
                   edit: Callable[[dict[str, Any]], None] | None = None) -> Workspace:
    """A workspace for ``stack`` with its database and provided secrets set as config."""
    from infra.spec import load_stack_file

    render_dir = tmp / "manifests"
    ws = init_workspace(
        tmp / "ws", stack, backend_dir=tmp / "state", passphrase="e2e-passphrase",
        vault_addr=server.address, vault_token=server.root_token,
        spec_text=spec_text or (REPO_ROOT / "Pulumi.local.yaml").read_text(),
        edit=edit or local_spec_editor(server, render_dir),
    )
    spec = load_stack_file(ws.stack_file, policy_dir=REPO_ROOT / "policies" / "acl")
    assert spec.database is not None
    conn = spec.database.connection
    ws.set_secret(conn.url_secret, postgres.connection_url_template())
    ws.set_secret(conn.username_secret, postgres.superuser)
    ws.set_secret(conn.password_secret, postgres.password)
    for secret in spec.static_secrets:
        if secret.config_secret:
            ws.set_secret(secret.config_secret, json.dumps({k: f"initial-{k}" for k in
                                                            secret.keys}))
    return ws


@pytest.fixture(scope="module")
def module_openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An OpenBao dev server shared by one test module (the local audit stanzas loaded)."""
    from infra.audit_config import render_audit_hcl
    from infra.spec import load_stack_file
    from tests.servers import start_openbao

    workdir = tmp_path_factory.mktemp("openbao-e2e")
    (workdir / ".local" / "openbao").mkdir(parents=True)
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    server = start_openbao(workdir, extra_config=render_audit_hcl(spec.audit.devices))
    try:
        yield server
    finally:
        server.stop()


def preview_steps(ws: Workspace) -> list[dict[str, Any]]:
    """``pulumi preview --json``'s steps (op, urn, ...)."""
    proc = ws.pulumi("preview", "--json", "--diff")
    return list(json.loads(proc.stdout).get("steps", []))


def changed(steps: list[dict[str, Any]]) -> dict[str, str]:
    """``{urn: op}`` for every step that is not ``same``."""
    return {s["urn"]: s["op"] for s in steps if s.get("op") not in {"same", "read"}}
