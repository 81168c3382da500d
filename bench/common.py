"""Helpers every benchmark shares: the machine line, medians, tables, and the fleet generator.

The fleet generator builds a stack spec of N services from ``Pulumi.prod.yaml``'s
spec (its mounts, limits, audit, JWT roles and base policies stay as they are):
each service gets its own ACL policy file, Kubernetes auth role, database role,
Vault Secrets Operator delivery and 5 static secrets (2 generated, 3 provided).
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SPEC_KEY = "tradepulse-vault:spec"
SECRETS_PER_SERVICE = 5
GENERATED_PER_SERVICE = 2  # the other three are provided (config secrets)


def machine() -> str:
    """Return a one-line machine description from /proc/cpuinfo and nproc."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) // (1024 * 1024)} GiB RAM"
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs (nproc){mem}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def timed(fn: Callable[[], object]) -> float:
    """Return the wall seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    """Return the median of ``values``."""
    return float(statistics.median(values))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Return a Markdown table (what docs/benchmarks.md quotes verbatim)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def emit(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],  # noqa: PLR0917
         notes: Sequence[str], as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print the benchmark's result: a Markdown block, or one JSON object with ``--json``."""
    if as_json:
        print(json.dumps({"title": title, "machine": machine(), "headers": list(headers),
                          "rows": [list(r) for r in rows], "notes": list(notes),
                          **(extra or {})}))
        return
    print(f"## {title}\n")
    print(f"machine: {machine()}\n")
    print(table(headers, rows))
    if notes:
        print()
        for note in notes:
            print(f"- {note}")


# --- the fleet ---------------------------------------------------------------------------

def service_name(i: int) -> str:
    """Return the name of generated service ``i``."""
    return f"svc-{i:04d}"


def policy_hcl(service: str) -> str:
    """Return the ACL policy of a generated service: its secrets and its database role."""
    return (
        f'path "secret/data/services/{service}/*" {{\n  capabilities = ["read"]\n}}\n\n'
        f'path "secret/metadata/services/{service}/*" {{\n  capabilities = ["read", "list"]\n}}\n\n'
        f'path "database/creds/{service}" {{\n  capabilities = ["read"]\n}}\n'
    )


def base_stack() -> dict[str, Any]:
    """Return ``Pulumi.prod.yaml`` parsed (the fleet's template)."""
    return dict(yaml.safe_load((REPO / "Pulumi.prod.yaml").read_text(encoding="utf-8")))


def secret_path(service: str, k: int) -> str:
    """Return the KV path of static secret ``k`` of ``service``."""
    return f"services/{service}/secret-{k}"


def config_secret_name(i: int, k: int) -> str:
    """Return the config key holding provided secret ``k`` of service ``i``."""
    return f"svc{i:04d}Secret{k}"


def fleet_spec(n: int) -> dict[str, Any]:
    """Return a spec dict of ``n`` generated services (prod's template otherwise)."""
    spec = copy.deepcopy(base_stack()["config"][SPEC_KEY])
    role_template = spec["database"]["roles"][0]
    base_policies = [p for p in spec["policies"] if not p.startswith("tradepulse-")]
    services, roles, secrets, policies = [], [], [], list(base_policies)
    for i in range(n):
        name = service_name(i)
        policies.append(name)
        role = copy.deepcopy(role_template)
        role["name"] = name
        role["creation_statements"] = [
            s.replace("tradepulse_execution", name.replace("-", "_"))
            for s in role["creation_statements"]]
        role["revocation_statements"] = [
            s.replace("tradepulse_execution", name.replace("-", "_"))
            for s in role["revocation_statements"]]
        roles.append(role)
        services.append({
            "name": name,
            "policies": [name],
            "kubernetes": {"namespace": f"ns-{i % 50:02d}", "service_account": name,
                           "workload": {"kind": "Deployment", "name": name}},
            "database_roles": [name],
            "token_ttl_seconds": 3600,  # 1h
            "token_max_ttl_seconds": 14400,  # 4h
        })
        for k in range(SECRETS_PER_SERVICE):
            secret: dict[str, Any] = {
                "mount": "secret", "path": secret_path(name, k), "keys": ["VALUE"],
                "version": 1 + (i + k) % 7,
                "rotation_interval_seconds": 7776000,  # 90d
                "consumers": [name],
            }
            if k < GENERATED_PER_SERVICE:
                secret.update(source="generated",
                              generator={"length": 32, "alphabet": "alphanumeric"})
            else:
                secret.update(source="provided", config_secret=config_secret_name(i, k))
            secrets.append(secret)
    spec["policies"] = policies
    spec["services"] = services
    spec["database"]["roles"] = roles
    spec["static_secrets"] = secrets
    return dict(spec)


def write_policy_dir(policy_dir: Path, n: int) -> Path:
    """Write the repository's policies and the ``n`` generated ones into ``policy_dir``."""
    policy_dir.mkdir(parents=True, exist_ok=True)
    for hcl in (REPO / "policies" / "acl").glob("*.hcl"):
        (policy_dir / hcl.name).write_text(hcl.read_text(encoding="utf-8"), encoding="utf-8")
    for i in range(n):
        name = service_name(i)
        (policy_dir / f"{name}.hcl").write_text(policy_hcl(name), encoding="utf-8")
    return policy_dir


def write_fleet_repo(root: Path, n: int, *, keep_prod: bool = True,
                     version: int | None = None) -> Path:
    """Write a repository with ``Pulumi.prod.yaml`` holding a fleet of ``n`` services.

    The other stack files and policies are the repository's own. With
    ``keep_prod`` prod's own three services and four secrets stay too (dr
    mirrors two of them); without it prod holds only the fleet. ``version``
    sets every static secret's declared version.
    """
    root.mkdir(parents=True, exist_ok=True)
    for stack_file in REPO.glob("Pulumi*.yaml"):
        (root / stack_file.name).write_text(stack_file.read_text(encoding="utf-8"),
                                            encoding="utf-8")
    write_policy_dir(root / "policies" / "acl", n)
    doc = base_stack()
    spec = fleet_spec(n)
    # Keep prod's own services and secrets too, so dr's mirrors still have an origin.
    prod = doc["config"][SPEC_KEY]
    if keep_prod:
        spec["policies"] = list(prod["policies"]) + spec["policies"][len(
            [p for p in prod["policies"] if not p.startswith("tradepulse-")]):]
        spec["services"] = list(prod["services"]) + spec["services"]
        spec["database"]["roles"] = list(prod["database"]["roles"]) + spec["database"]["roles"]
        spec["static_secrets"] = list(prod["static_secrets"]) + spec["static_secrets"]
    if version is not None:
        for secret in spec["static_secrets"]:
            secret["version"] = version
    doc["config"][SPEC_KEY] = spec
    header = "# yaml-language-server: $schema=kernel/schema/stack.schema.json\n"
    (root / "Pulumi.prod.yaml").write_text(
        header + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    return root


def git_init(root: Path) -> None:
    """Make ``root`` a git repository with everything in one commit."""
    git = ["git", "-C", str(root), "-c", "user.name=Bench",
           "-c", "user.email=bench@tradepulse.test"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fleet"], check=True)


def run_cli(*argv: str) -> dict[str, Any]:
    """Run ``python -m rotation`` in-process with ``--json``; return its JSON (exit must be 0)."""
    import contextlib
    import io

    from rotation.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    if code != 0:
        raise SystemExit(f"rotation {argv[0]} exited {code}: {out.getvalue()[-2000:]}")
    return dict(json.loads(out.getvalue()))
