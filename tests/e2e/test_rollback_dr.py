"""A prod rollback followed by its dr mirror, through `pulumi up` of both stacks on the real engine.

Two stacks of one project share a file backend, each against its own
OpenBao: ``prod`` (the local stack's spec as prod, its signing key
``mirror_to_dr: true``) and ``dr`` (the same spec as dr, the signing key
``mirror_of: prod``), so dr's program reads prod's ``dr_mirror`` output
through a real ``StackReference``. The database engine is left out of both
(one PostgreSQL cannot serve two Vaults' root logins, and no database path is
involved). prod rotates the key (the bad version 2) and dr follows; then prod
rolls back to version 1: prod's apply writes version 3 with version 1's data
read from prod's history, dr's apply writes its version 3 with ``cas = 2``
and the same data, taken from prod's output, not from dr's history.
``verify --stack dr`` proves by digest that dr's version 3 holds dr's
version 1's data, and ``record --stack dr`` marks the rollback. No value
appears in any output.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.audit_config import render_audit_hcl
from kernel.spec import load_stack_file
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import git_init
from tests.e2e.test_credential_rotations import rotation_cli
from tests.servers import start_openbao
from tools.localenv import Workspace, init_workspace, render_only

pytestmark = pytest.mark.e2e

SIGNING = "secret/services/execution/session-signing-key"
PATH = "services/execution/session-signing-key"
PASSPHRASE = "e2e-passphrase"


def data(server: Any, version: int) -> dict[str, str]:
    """Read a version's data (compared inside the test, never printed)."""
    answer = server.client().secrets.kv.v2.read_secret_version(
        path=PATH, mount_point="secret", version=version, raise_on_deleted_version=True)
    return dict(answer["data"]["data"])


def as_stack(environment: str, server: Any, render_dir: Path) -> Any:
    def edit(spec: dict[str, Any]) -> None:
        spec["environment"] = environment
        spec["vault"]["address"] = server.address
        render_only(spec, str(render_dir))
        spec.pop("database")
        for service in spec["services"]:
            service.pop("database_roles", None)
        for i, secret in enumerate(spec["static_secrets"]):
            if f"{secret['mount']}/{secret['path']}" != SIGNING:
                continue
            if environment == "prod":
                secret["mirror_to_dr"] = True
            else:
                spec["static_secrets"][i] = {k: secret[k] for k in ("mount", "path", "keys",
                                                                     "consumers")}
                spec["static_secrets"][i]["mirror_of"] = "prod"
    return edit


@pytest.fixture(scope="module")
def pair(engine: str, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[Workspace, Any, Workspace, Any]]:
    """prod and dr applied once, each against a fresh OpenBao, sharing one backend."""
    tmp = tmp_path_factory.mktemp("rollback-dr")
    audit = render_audit_hcl(load_stack_file(REPO_ROOT / "Pulumi.local.yaml").audit.devices)
    servers = []
    try:
        for name in ("prod", "dr"):
            workdir = tmp / f"openbao-{name}"
            (workdir / ".local" / "openbao").mkdir(parents=True)
            servers.append(start_openbao(workdir, extra_config=audit))
            servers[-1].client().sys.disable_secrets_engine("secret")
        text = (REPO_ROOT / "Pulumi.local.yaml").read_text()
        workspaces = [
            init_workspace(tmp / "ws", name, backend_dir=tmp / "state", passphrase=PASSPHRASE,
                           vault_addr=server.address, vault_token=server.root_token,
                           spec_text=text, edit=as_stack(name, server, tmp / f"render-{name}"))
            for name, server in zip(("prod", "dr"), servers, strict=True)]
        prod_ws = workspaces[0]
        for secret in load_stack_file(prod_ws.stack_file).static_secrets:
            if secret.config_secret:
                for ws in workspaces:
                    ws.set_secret(secret.config_secret, json.dumps(
                        {k: f"{ws.stack}-{secret.id}-{k}" for k in secret.keys}))
        git_init(prod_ws.root)
        for ws in workspaces:
            ws.pulumi("up", "--yes", "--skip-preview")
        yield workspaces[0], servers[0], workspaces[1], servers[1]
    finally:
        for server in servers:
            server.stop()


def commit(ws: Workspace, message: str) -> None:
    subprocess.run(["git", "-C", str(ws.root), "commit", "-qam", message], check=True)


def test_dr_follows_a_prod_rollback_through_the_engine(
    pair: tuple[Workspace, Any, Workspace, Any], tmp_path: Path
) -> None:
    prod_ws, prod, dr_ws, dr = pair
    assert data(dr, 1) == data(prod, 1)  # the mirror took prod's first version
    good = data(prod, 1)
    assert rotation_cli(prod_ws, "bump", "--stack", "prod", SIGNING, "--reason", "monthly"
                        ).returncode == 0
    commit(prod_ws, "rotate the signing key")
    for ws in (prod_ws, dr_ws):
        ws.pulumi("up", "--yes", "--skip-preview")
    bad = data(prod, 2)
    assert bad != good and data(dr, 2) == bad

    rollback = rotation_cli(prod_ws, "rollback", "--stack", "prod", SIGNING, "--to-version",
                            "1", "--reason", "v2 broke the verifiers")
    assert rollback.returncode == 0, rollback.stderr
    commit(prod_ws, "roll back the signing key to version 1")
    plan = rotation_cli(prod_ws, "plan", "--base", "HEAD~1")
    assert (f"| dr | `{SIGNING}` (follows prod) **rollback: restores version 1** | 2 → 3 | 2 |"
            in plan.stdout), plan.stdout + plan.stderr
    for ws in (prod_ws, dr_ws):
        ws.pulumi("up", "--yes", "--skip-preview")
    meta = dr.client().secrets.kv.v2.read_secret_metadata(path=PATH, mount_point="secret")
    assert meta["data"]["current_version"] == 3
    assert data(prod, 3) == good and data(dr, 3) == good

    audit_log = str(dr.workdir / ".local" / "openbao" / "audit.log")
    verify = rotation_cli(dr_ws, "verify", "--json", "--stack", "dr", "--base", "HEAD~1",
                          "--audit-log", audit_log)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0, report
    assert report["restored"] == {SIGNING: {"version": 3, "restores": 1, "data_matches": True}}
    evidence = tmp_path / "verify.json"
    evidence.write_text(verify.stdout)
    record = rotation_cli(dr_ws, "record", "--stack", "dr", "--base", "HEAD~1", "--operator",
                          "E2E", "--date", "2026-12-01", "--evidence", str(evidence))
    assert record.returncode == 0, record.stderr
    text = (dr_ws.root / "reports/security/secret-rotations/2026-12-01.md").read_text()
    assert f"| `{SIGNING}` (rollback: data of v1, digest verified) | 2 → 3 | 3 |" in text
    outputs = "".join(p.stdout + p.stderr for p in (rollback, plan, verify, record)) + text
    for value in (*good.values(), *bad.values()):
        assert value not in outputs
