"""The local environment: OpenBao + PostgreSQL on loopback and a Pulumi workspace for a stack.

``make up`` / ``make down`` call this module; the end-to-end tests use the
same :class:`Workspace` with servers they start themselves.

A workspace is a small directory that Pulumi runs in: ``Pulumi.yaml`` (using
the repository's ``.venv``), a link to ``infra/``, a copy of ``policies/``, and a copy
of ``Pulumi.<stack>.yaml`` that Pulumi may write to (encryption salt, secret
config) without touching the committed file. Re-syncing copies the committed
spec in again and keeps the workspace-only keys.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_KEY = "tradepulse-vault:spec"
LOCAL_DIR = REPO_ROOT / ".local"
STACK_FILE = REPO_ROOT / "Pulumi.local.yaml"
# The committed stack file as last applied: what `make up-apply` plans its change against.
APPLIED_STACK_FILE = LOCAL_DIR / "applied-Pulumi.local.yaml"


@dataclass
class Workspace:
    """A Pulumi project directory for one stack, with its own file backend and passphrase."""

    root: Path
    stack: str
    backend_dir: Path
    passphrase: str
    vault_addr: str
    vault_token: str
    backend_url: str | None = None  # default: file://<backend_dir>
    base_env: dict[str, str] | None = None  # e.g. AWS settings for s3:// and awskms://

    @property
    def stack_file(self) -> Path:
        """The workspace's copy of ``Pulumi.<stack>.yaml``."""
        return self.root / f"Pulumi.{self.stack}.yaml"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for pulumi: backend, passphrase, no update checks or downloads, Vault."""
        env = dict(os.environ)
        env.update(self.base_env or {})
        env.update({
            "PULUMI_BACKEND_URL": self.backend_url or f"file://{self.backend_dir}",
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "VAULT_ADDR": self.vault_addr,
            "VAULT_TOKEN": self.vault_token,
        })
        env.update(extra or {})
        return env

    def pulumi(self, *args: str, check: bool = True, input_text: str | None = None,
               extra_env: dict[str, str] | None = None,
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run ``pulumi <args> --stack <stack>`` in the workspace."""
        cmd = ["pulumi", *args, "--stack", self.stack, "--non-interactive"]
        proc = subprocess.run(cmd, cwd=self.root, env=self.env(extra_env), text=True,
                              capture_output=True, input=input_text, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc

    def set_secret(self, key: str, value: str) -> None:
        """``pulumi config set --secret`` with the value on stdin (never an argument)."""
        self.pulumi("config", "set", "--secret", f"tradepulse-vault:{key}", input_text=value)


def write_project(root: Path, venv: Path) -> None:
    """Write ``Pulumi.yaml``, link ``infra/`` and copy ``policies/`` into ``root``.

    The policies are a copy, not a link: the plan reads them at git revisions of
    the workspace, and git keeps a linked directory as a link (its files would be
    seen in the working tree only, so every capability would look gained).
    """
    root.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    project["runtime"]["options"]["virtualenv"] = str(venv)
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    link = root / "infra"
    if not link.exists():
        link.symlink_to(REPO_ROOT / "infra", target_is_directory=True)
    policies = root / "policies"
    if policies.is_symlink():
        policies.unlink()
    shutil.copytree(REPO_ROOT / "policies", policies, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))


def sync_stack_file(workspace: Workspace, spec_text: str,
                    edit: Any = None) -> None:
    """Copy a stack file's spec into the workspace, keeping workspace-only keys.

    ``edit``, when given, is called with the parsed spec (a dict) to adapt it
    (e.g. the test server's address) before it is written.
    """
    new = yaml.safe_load(spec_text)
    if edit is not None:
        edit(new["config"][SPEC_KEY])
    path = workspace.stack_file
    if path.exists():
        old = yaml.safe_load(path.read_text()) or {}
        for key in ("encryptionsalt", "encryptedkey", "secretsprovider"):
            if key in old:
                new[key] = old[key]
        for key, value in (old.get("config") or {}).items():
            if isinstance(value, dict) and "secure" in value:
                new["config"].setdefault(key, value)
    path.write_text(yaml.safe_dump(new, sort_keys=False))


def init_workspace(
    root: Path, stack: str, *, backend_dir: Path, passphrase: str, vault_addr: str,
    vault_token: str, spec_text: str, edit: Any = None, backend_url: str | None = None,
    secrets_provider: str = "passphrase", base_env: dict[str, str] | None = None,
) -> Workspace:
    """Create (or reuse) a workspace and its stack (file backend unless ``backend_url``)."""
    write_project(root, REPO_ROOT / ".venv")
    backend_dir.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root, stack, backend_dir, passphrase, vault_addr, vault_token, backend_url,
                   base_env)
    sync_stack_file(ws, spec_text, edit)
    listed = subprocess.run(["pulumi", "stack", "ls", "--json"], cwd=root, env=ws.env(),
                            capture_output=True, text=True, check=False)
    names = {s.get("name") for s in json.loads(listed.stdout or "[]")} \
        if listed.returncode == 0 else set()
    if stack not in names and f"organization/tradepulse-vault/{stack}" not in names:
        subprocess.run(["pulumi", "stack", "init", stack, "--secrets-provider",
                        secrets_provider, "--non-interactive"], cwd=root, env=ws.env(),
                       capture_output=True, text=True, check=True)
    return ws


# ----------------------------------------------------------------------------- make up/down

VAULT_PLUGIN_MISSING = """\
make up: the Pulumi vault provider plugin (pulumi-resource-vault 7.14.0) is not installed.
Run `make toolchain` (tools/toolchain/build.sh builds it), or with internet access install
Pulumi normally, `pulumi plugin install resource vault 7.14.0`, and run
`TRADEPULSE_SYSTEM_PULUMI=1 make up`. Nothing was started."""


def installed_plugins() -> set[str]:
    """Names of the resource plugins the ``pulumi`` on PATH has installed."""
    listed = subprocess.run(["pulumi", "plugin", "ls", "--json"], capture_output=True,
                            text=True, check=False)
    if listed.returncode != 0:
        return set()
    return {p["name"] for p in json.loads(listed.stdout or "[]")}



def _state() -> dict[str, Any]:
    path = LOCAL_DIR / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


VAULT_ROOT_ROLE = "tp_vault_root"


def prepare_database(spec: Any, pg: Any) -> tuple[str, str]:
    """Create the users the stack expects in PostgreSQL; return Vault's root login.

    Vault connects as its own ``CREATEROLE`` user, not the cluster superuser, so
    a ``root_rotation`` bump (rotate-root) leaves the superuser's password, which
    the tools use, alone. Each static role's user must exist before Vault takes
    it over. Re-running sets a fresh root password (a new Vault, a new seed).
    """
    password = secrets.token_urlsafe(24)
    users = [VAULT_ROOT_ROLE] + [r.username for r in spec.database.static_roles]
    for user in users:  # names match the schema's ^[a-z_][a-z0-9_]*$: nothing to escape
        if pg.psql(f"select count(*) from pg_roles where rolname = '{user}'") == "0":  # noqa: S608
            pg.psql(f'CREATE ROLE "{user}" LOGIN')
    pg.psql(f'ALTER ROLE "{VAULT_ROOT_ROLE}" CREATEROLE PASSWORD \'{password}\'')
    return VAULT_ROOT_ROLE, password


def set_stack_secrets(ws: Workspace, spec: Any, pg: Any) -> None:
    """Store the database connection and fresh provided-secret values as config secrets."""
    assert spec.database is not None
    conn = spec.database.connection
    root_user, root_password = prepare_database(spec, pg)
    ws.set_secret(conn.url_secret, pg.connection_url_template())
    ws.set_secret(conn.username_secret, root_user)
    ws.set_secret(conn.password_secret, root_password)
    for secret in spec.static_secrets:
        if secret.config_secret:
            ws.set_secret(secret.config_secret, json.dumps(
                {k: secrets.token_urlsafe(24) for k in secret.keys}))


def use_cluster(data: dict[str, Any], address: str, ca_pem: str, context: str) -> None:
    """Point a spec (parsed, a dict) at a running API server: address, CA, kubeconfig context."""
    auth = data["auth"]["kubernetes"]
    auth["host"] = address
    auth["ca_cert"] = ca_pem
    delivery = data["delivery"]["kubernetes"]
    delivery.pop("render_dir", None)
    delivery["context"] = context


def render_only(data: dict[str, Any], render_dir: str) -> None:
    """Make a spec (a dict) render its delivery objects instead of applying them (no cluster).

    Without a cluster there is no token reviewer either: Vault would review each login
    with the login's own JWT (nothing logs in where this is used).
    """
    delivery = data["delivery"]["kubernetes"]
    delivery.pop("context", None)
    delivery["render_dir"] = render_dir
    data["auth"]["kubernetes"].pop("token_reviewer_jwt_secret", None)


def set_kubernetes_secrets(ws: Workspace, spec: Any, kube: Any,
                           seconds: int = 24 * 60 * 60) -> None:
    """Store the token reviewer's JWT (TokenRequest, ``seconds`` long) as a config secret."""
    from tests.kubeserver import reviewer_token

    auth = spec.auth.kubernetes
    if auth is not None and auth.token_reviewer_jwt_secret:
        ws.set_secret(auth.token_reviewer_jwt_secret, reviewer_token(kube, seconds))


def _start_cluster(spec: Any, state: dict[str, Any]) -> Any:
    """Start make up's etcd + kube-apiserver (the stack's auth host port) and bootstrap it."""
    from tests.kubeserver import bootstrap, start_kube_apiserver

    kube_dir = LOCAL_DIR / "kube"
    if kube_dir.exists():
        shutil.rmtree(kube_dir)
    assert spec.auth.kubernetes is not None
    kube_port = int(spec.auth.kubernetes.host.rsplit(":", 1)[1])
    print(f"make up: starting etcd and kube-apiserver on 127.0.0.1:{kube_port}",
          file=sys.stderr)
    kube = start_kube_apiserver(kube_dir, port=kube_port, detach=True)
    state.update({"kube_pids": [p.pid for p in kube.processes], "kube_address": kube.address,
                  "kube_context": kube.context, "kubeconfig": str(kube.kubeconfig),
                  "kube_ca": str(kube.pki.ca)})
    _write_private(LOCAL_DIR / "run.json", json.dumps(state))
    bootstrap(kube, spec)
    return kube


def up() -> int:  # noqa: PLR0915 - one start-up sequence, step after step
    """Start OpenBao (with the local audit stanzas) and PostgreSQL, then ``pulumi up``."""
    sys.path.insert(0, str(REPO_ROOT))
    from infra.audit_config import render_audit_hcl
    from kernel.spec.loader import load_stack_file, read_stack_document
    from tests.servers import start_openbao, start_postgres

    if shutil.which("pulumi") is None:
        print("error: pulumi not on PATH; run `make toolchain` (make up does)", file=sys.stderr)
        return 2
    if "vault" not in installed_plugins():
        print(VAULT_PLUGIN_MISSING, file=sys.stderr)
        return 3
    state = _state()
    if state.get("openbao_pid") and _alive(state["openbao_pid"]):
        print("local environment already running; `make down` first", file=sys.stderr)
        return 1
    # The file read once: the spec is validated from this text, the workspace gets it, and
    # the record of the last apply is this text, not the file as it may be after an edit.
    document = read_stack_document(STACK_FILE)
    spec = load_stack_file(STACK_FILE, document=document)
    spec_text = document.text
    LOCAL_DIR.mkdir(exist_ok=True)
    (LOCAL_DIR / "openbao").mkdir(exist_ok=True)
    pg_dir = LOCAL_DIR / "postgres"
    if pg_dir.exists():
        shutil.rmtree(pg_dir)
    pg_dir.mkdir()
    pg_dir.chmod(0o755)
    LOCAL_DIR.chmod(0o755)
    port = int(spec.vault.address.rsplit(":", 1)[1])
    bao = start_openbao(REPO_ROOT, extra_config=render_audit_hcl(spec.audit.devices),
                        port=port, config_dir=LOCAL_DIR / "openbao", detach=True)
    # Dev mode mounts secret/ itself; the local stack declares (and owns) it.
    bao.client().sys.disable_secrets_engine("secret")
    pg = start_postgres(pg_dir)
    state = {
        "openbao_pid": bao.process.pid, "openbao_addr": bao.address,
        "postgres_datadir": str(pg.datadir), "postgres_bin": str(pg.pg_bin),
        "postgres_run_as": pg.run_as, "postgres_port": pg.port,
    }
    _write_private(LOCAL_DIR / "run.json", json.dumps(state))
    kube = _start_cluster(spec, state)
    edit = _cluster_edit(state)
    # KUBECONFIG too: verify --consumers and reload talk to this API server,
    # and the README's block sources only this file.
    _write_private(LOCAL_DIR / "env", f"export VAULT_ADDR={bao.address}\n"
                   f"export VAULT_TOKEN={bao.root_token}\n"
                   f"export KUBECONFIG={kube.kubeconfig}\n")
    passphrase_file = LOCAL_DIR / "pulumi-passphrase"
    if not passphrase_file.exists():
        _write_private(passphrase_file, secrets.token_urlsafe(24))
    ws = init_workspace(LOCAL_DIR / "workspace", "local", backend_dir=LOCAL_DIR / "state",
                        passphrase=passphrase_file.read_text().strip(),
                        vault_addr=bao.address, vault_token=bao.root_token,
                        spec_text=spec_text, edit=edit, base_env=kube.env())
    set_stack_secrets(ws, spec, pg)
    set_kubernetes_secrets(ws, spec, kube)
    started = time.monotonic()
    proc = apply_to_new_server(ws, spec, spec_text, edit, bao.client())
    sys.stderr.write(proc.stderr[-2000:])
    if proc.returncode != 0:
        print(proc.stdout[-4000:])
        print("error: pulumi up --stack local failed (servers left running; make down "
              "stops them)", file=sys.stderr)
        return 1
    APPLIED_STACK_FILE.write_text(spec_text)
    outputs = json.loads(ws.pulumi("stack", "output", "--json").stdout)
    print(f"pulumi up --stack local converged in {time.monotonic() - started:.0f}s\n")
    print(f"OpenBao:     {bao.address}  (audit log .local/openbao/audit.log)")
    print(f"PostgreSQL:  127.0.0.1:{pg.port}")
    for key in ("kv_mounts", "policies", "database_roles", "database_static_roles",
                "kubernetes_roles", "jwt_roles", "jwt_issuer_keys", "audit_devices",
                "static_secret_versions", "credential_versions", "delivery_resources"):
        if key in outputs:
            print(f"{key + ':':<24} {json.dumps(outputs[key])}")
    print(f"Kubernetes:  {kube.address}  (kubeconfig {_rel(kube.kubeconfig)}, context "
          f"{kube.context}; ServiceAccounts and VSO objects applied: `kubectl get "
          "serviceaccounts,vaultauths,vaultstaticsecrets -A`)")
    print(LOGIN_HELP)
    print("\nFirst rotation:\n  source .local/env\n"
          "  .venv/bin/python -m rotation bump --stack local "
          "secret/services/execution/session-signing-key --allow-dirty\n"
          "  make up-apply        # pulumi up the bump\n"
          "  .venv/bin/python -m rotation verify --stack local --secret "
          "secret/services/execution/session-signing-key --audit-log .local/openbao/audit.log\n"
          "\nThe other credential classes rotate the same way (bump, make up-apply, verify "
          "--before <preflight --json>):\n"
          "  identity/oidc/key/tradepulse-adapters       JWT issuer key (rotate now)\n"
          "  database/config/tradepulse-postgres         root credential (rotate-root)\n"
          "  database/static-roles/execution-settlement  static role (rotate-role)\n"
          "  database/roles/tradepulse-execution         revoke every lease of the role\n"
          "\nStop everything: make down")
    return 0


# What versions 2..N-1 of a secret hold on a new local server: named, never a value.
HISTORY_PLACEHOLDER = "placeholder version {version}: written by make up on a new server"


def apply_to_new_server(ws: Workspace, spec: Any, spec_text: str, edit: Any,
                        client: Any) -> subprocess.CompletedProcess[str]:
    """``pulumi up`` of ``spec_text`` on a server that has no KV history yet.

    Every ``make up`` starts a new OpenBao, but the stack file keeps its versions: after
    a rotation (``bump``, committed or not) a secret is declared at version N > 1, and
    its write (``cas = N - 1``) is refused by a server on which it does not exist, as
    check-and-set must refuse it. So a secret declared past version 1 is first created
    at version 1 (the stack file's copy in the workspace, with its rollback and overlap
    markers dropped), versions 2..N-1 are written as named placeholders (this is a
    local, throwaway server: no value is invented for anything that reads them), and
    then the stack file as declared is applied: version N with ``cas = N - 1``, the
    same write a rotation makes. Without such secrets this is one ``pulumi up``.
    """
    later = [s for s in spec.static_secrets if s.version is not None and s.version > 1]
    if later:
        ids = {s.id for s in later}

        def at_first_version(data: dict[str, Any]) -> None:
            if edit is not None:
                edit(data)
            for item in data.get("static_secrets", []):
                if f"{item['mount']}/{item['path']}" in ids:
                    item["version"] = 1
                    for marker in ("restores", "previous", "retired"):
                        item.pop(marker, None)

        sync_stack_file(ws, spec_text, at_first_version)
        first = ws.pulumi("up", "--yes", "--skip-preview", check=False)
        if first.returncode != 0:
            return first
        for secret in later:
            for version in range(2, secret.version):
                client.secrets.kv.v2.create_or_update_secret(
                    path=secret.path, mount_point=secret.mount, cas=version - 1,
                    secret={key: HISTORY_PLACEHOLDER.format(version=version)
                            for key in secret.keys})
            held = (f"versions 2..{secret.version - 1} hold placeholders"
                    if secret.version > 2 else "version 1 was just created")
            print(f"make up: {secret.id} is declared at version {secret.version} and this "
                  f"OpenBao is new: {held}; the apply writes version {secret.version} "
                  f"with cas={secret.version - 1}", file=sys.stderr)
        sync_stack_file(ws, spec_text, edit)
    return ws.pulumi("up", "--yes", "--skip-preview", check=False)


LOGIN_HELP = """
Log in as a service (its ServiceAccount's TokenRequest token, audience vault; the JWT goes
on stdin, never on a command line):
  source .local/env && source tools/toolchain/env.sh    # .local/env sets KUBECONFIG too
  kubectl create token execution-connector -n trading --audience=vault |
    .venv/bin/bao write auth/kubernetes/login role=execution jwt=-
Every service at once (post-rotation check), and the reloads after a rotation:
  .venv/bin/python -m rotation verify --stack local --consumers
  .venv/bin/python -m rotation reload --stack local"""


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _cluster_edit(state: dict[str, Any]) -> Any:
    """Return the edit that points the workspace's spec at make up's API server."""
    ca_pem = Path(state["kube_ca"]).read_text()

    def edit(data: dict[str, Any]) -> None:
        use_cluster(data, state["kube_address"], ca_pem, state["kube_context"])

    return edit


def apply(*, whole_stack: bool = False) -> int:
    """Re-sync the committed local stack file into the workspace and ``pulumi up``.

    A rotation-only change since the last apply is applied with ``--target``
    (:mod:`tools.targeted_apply`), then checked with a whole-stack
    ``preview --expect-no-changes``; anything else, or ``whole_stack``, applies
    the whole stack.
    """
    sys.path.insert(0, str(REPO_ROOT))
    from tools import targeted_apply

    state = _state()
    if not state:
        print("error: nothing running; `make up` first", file=sys.stderr)
        return 1
    from rotation.envfile import parse_env_file

    token = parse_env_file(LOCAL_DIR / "env")["VAULT_TOKEN"]
    ws = Workspace(LOCAL_DIR / "workspace", "local", LOCAL_DIR / "state",
                   (LOCAL_DIR / "pulumi-passphrase").read_text().strip(),
                   state["openbao_addr"], token, base_env={"KUBECONFIG": state["kubeconfig"]})
    committed = STACK_FILE.read_text()
    applied = APPLIED_STACK_FILE.read_text() if APPLIED_STACK_FILE.exists() else None
    sync_stack_file(ws, committed, _cluster_edit(state))
    started = time.monotonic()
    result = targeted_apply.apply(ws, "local", applied, committed, REPO_ROOT,
                                  whole_stack=whole_stack)
    print(result.output[-6000:])
    for urn in result.targets:
        print(f"  targeted: {urn}", file=sys.stderr)
    print(f"make up-apply: {result.message} ({time.monotonic() - started:.0f}s)",
          file=sys.stderr)
    if not result.ok:
        return 1
    APPLIED_STACK_FILE.write_text(committed)
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_gone(pid: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


def down() -> int:
    """Stop what ``make up`` started; keep nothing but the passphrase."""
    state = _state()
    if state.get("openbao_pid") and _alive(state["openbao_pid"]):
        os.kill(state["openbao_pid"], signal.SIGTERM)
    for pid in reversed(state.get("kube_pids", [])):  # kube-apiserver first, then etcd
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid)
    if state.get("postgres_datadir"):
        cmd = [str(Path(state["postgres_bin"]) / "pg_ctl"), "-D", state["postgres_datadir"],
               "-m", "fast", "-w", "stop"]
        if state.get("postgres_run_as"):
            cmd = ["runuser", "-u", state["postgres_run_as"], "--", *cmd]
        subprocess.run(cmd, capture_output=True, check=False)
    for name in ("run.json", "env", "state", "workspace", "postgres", "kube",
                 APPLIED_STACK_FILE.name):
        path = LOCAL_DIR / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
    print("local environment stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python tools/localenv.py up|apply|down``."""
    parser = argparse.ArgumentParser(prog="tools/localenv.py")
    parser.add_argument("action", choices=["up", "apply", "down"])
    parser.add_argument("--whole-stack", action="store_true",
                        help="apply: the whole stack even for a rotation-only change")
    args = parser.parse_args(argv)
    if args.action == "apply":
        return apply(whole_stack=args.whole_stack)
    return {"up": up, "down": down}[args.action]()


if __name__ == "__main__":
    raise SystemExit(main())
