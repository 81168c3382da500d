"""``preflight --stack ENV``: the runbook's pre-rotation checklist, as checks that can fail.

1. Vault is initialized, unsealed and active. Sealed or not initialised fails
   (exit 3). A standby is followed to the active node it names (OpenBao's
   standbys forward every request there anyway) and the report says which
   node is active; a standby that knows no reachable active node fails
   (exit 3) naming it (``rotation.cluster``).
2. The caller's token has the capabilities the apply needs on every secret
   the stack will write (``sys/capabilities-self``).
3. Each rotated secret (the plan of ``--base``..working tree, or ``--secret``)
   is live at exactly declared - 1; every other secret is in sync or one
   behind. Anything else is a conflict: the message says when the live
   version was written and how to merge. Live ahead on a secret this apply
   does not write is reported as drift (a warning).
4. Every enabled audit device is logging (a file device whose file does not
   grow after an audited request is failing: Vault stops serving once no
   device can log).
5. No Pulumi update is running on the stack (the backend's lock objects),
   and none died leaving work behind: a lock whose process is gone (a killed
   ``pulumi up``) and the checkpoint's pending operations are failures, each
   secret with a pending write is reported with what Vault holds (did the
   killed apply's write land?), and ``next_steps`` lists exactly what to run
   (:func:`recovery_steps`: ``adopt-pending`` records a landed write, so the
   re-run does not write it again).
6. For each rotated JWT key, root credential, static role or lease generation:
   the token has the capabilities its apply-time write needs (rotation-operator
   may rotate static roles; the root credential, JWT issuer keys and revoking a
   role's leases, which needs ``sudo``, are applied with break-glass), and what
   ``verify --before`` will compare with is recorded (``credentials[].before``).
7. A pending secret that declares ``restores: M`` (a rollback) still has version
   M in its history: present, not deleted or destroyed, not pushed out by
   ``max_versions`` (:mod:`rotation.rollback`); the token may read it. A dr
   mirror of a prod rollback is checked the same way in dr's own history: its
   apply writes prod's restored data, and ``verify`` compares with dr's version M.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

import hvac

from kernel.naming import resource_name
from kernel.redact import display_url
from kernel.spec.credentials import Credential, credential
from kernel.spec.model import EnvironmentSpec
from rotation.audit_probe import probe_audit_devices
from rotation.cluster import follow_active
from rotation.credential_checks import observe
from rotation.errors import BadInput, CheckFailed
from rotation.live.declared import SecretState
from rotation.live.scan import secret_states
from rotation.locks import PendingOperation, lock_holders, pending_operations, stack_locks
from rotation.output import Result
from rotation.planning import add_rotated_arguments, rotated_in
from rotation.progress import progress_bar
from rotation.rollback import restorable_problem
from rotation.stacks import add_stack_arguments, repo_root, targets
from rotation.timefmt import rfc3339
from rotation.vault import response_data, vault_errors

NAME = "preflight"
# Rotations the rotation-operator policy may apply; the others need break-glass.
OPERATOR_KINDS = frozenset({"kv", "db-static-role"})
HELP = "check Vault health, token capabilities, live versions and the stack lock"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register preflight's arguments."""
    add_stack_arguments(parser)
    add_rotated_arguments(parser)
    parser.add_argument("--backend", help="Pulumi backend URL for the lock check "
                        "(default: $PULUMI_BACKEND_URL)")
    parser.add_argument("--server-dir", type=Path,
                        help="the server's working directory, for relative audit file paths")
    parser.add_argument("--skip-lock-check", action="store_true",
                        help="do not check the Pulumi lock (say why in the ticket)")


def conflict_message(state: SecretState) -> str:
    """Explain a live version that is neither the declared one nor the one before it."""
    live, declared = state.live_version, state.declared
    when = rfc3339(state.live.updated_time) if state.live and state.live.updated_time \
        else "at an unknown time"
    if live > declared:
        return (f"{state.secret.id}: live version {live} (written {when}) is ahead of the "
                f"declared {declared}: someone wrote it outside this repository. Merge: read "
                f"the live value, fold its change into the rotation, then rebase the bump so "
                f"the stack declares {live + 1}")
    return (f"{state.secret.id}: live version {live} is {declared - live} behind the declared "
            f"{declared}; a rotation moves exactly one version (apply the earlier bump first, "
            "or import the secret)")


def classify(
    states: list[SecretState], rotated: set[str]
) -> tuple[dict[str, str], list[str], list[str]]:
    """Return each secret's state (in_sync/pending/drifted/conflict), failures and warnings."""
    failures: list[str] = []
    warnings: list[str] = []
    classified: dict[str, str] = {}
    for state in states:
        live, declared = state.live_version, state.declared
        if state.secret.id in rotated and live == declared:
            classified[state.secret.id] = "conflict"
            updated = state.live.updated_time if state.live else None
            when = rfc3339(updated) if updated else "at an unknown time"
            failures.append(
                f"{state.secret.id}: already at version {declared} (written {when}) before this "
                "rotation was applied: someone wrote it outside this repository (or the "
                "rotation was applied already: run verify). Merge: read the live value, fold "
                f"its change in, rebase the bump to declare {live + 1}")
        elif live == declared:
            classified[state.secret.id] = "in_sync"
        elif live == declared - 1:
            classified[state.secret.id] = "pending"
        elif live > declared and state.secret.id not in rotated:
            classified[state.secret.id] = "drifted"
            warnings.append(conflict_message(state) + " (this apply does not write it)")
        else:
            classified[state.secret.id] = "conflict"
            failures.append(conflict_message(state))
    return classified, failures, warnings


SECRET_TYPE = "vault:kv/secretV2:SecretV2"  # noqa: S105 - a type token


def pending_message(stack: str, pending: list[PendingOperation],
                    states: list[SecretState]) -> str:
    """Name each resource a killed update left pending; for secrets, what Vault holds."""
    by_name = {resource_name("secret", s.secret.mount, *s.secret.path.split("/")): s
               for s in states}
    parts = []
    for op in pending:
        state = by_name.get(op.name) if op.type == SECRET_TYPE else None
        if state is None:
            parts.append(f"{op.operation} {op.name} ({op.type})")
            continue
        landed = (f"its write landed: version {state.live_version} is live"
                  if state.live_version == state.declared
                  else f"its write did not land: live version {state.live_version}")
        parts.append(f"{op.operation} {state.secret.id} (declared {state.declared}; {landed})")
    return (f"stack {stack}: a killed Pulumi update left {len(pending)} pending "
            f"operation(s): {'; '.join(parts)}")


def settle_interrupted(lock: dict[str, Any], states: list[SecretState],
                       classified: dict[str, str], failures: list[str]) -> None:
    """Mark a secret the killed update was writing ``interrupted``, not someone else's write.

    Its live version being the declared one is the killed apply's own write;
    the pending-operation failure already says so, and what to run.
    """
    names = {op["name"] for op in lock.get("pending_operations", [])
             if op.get("type") == SECRET_TYPE}
    for state in states:
        name = resource_name("secret", state.secret.mount, *state.secret.path.split("/"))
        if name not in names:
            continue
        classified[state.secret.id] = "interrupted"
        failures[:] = [f for f in failures if not f.startswith(f"{state.secret.id}: ")]


def renders_only(spec: EnvironmentSpec) -> bool:
    """Tell whether the stack renders its Kubernetes objects to files instead of applying them."""
    return spec.delivery is not None and spec.delivery.render_dir is not None


def recovery_steps(stack: str, stale: bool, pending: list[PendingOperation],
                   render_only: bool = False) -> list[str]:
    """Return the commands that clear what a killed ``pulumi up`` left, in order.

    A killed update's KV write may have reached Vault: then ``pulumi refresh``
    cannot tell (the provider reads only metadata) and a plain ``pulumi up``
    writes again with the old check-and-set index, which Vault refuses.
    ``adopt-pending`` checks each pending write against Vault, records the
    landed ones and clears the pending operations; ``pulumi up`` finishes the
    rest. A pending create is not in the state to record: Pulumi's ``refresh
    --clear-pending-creates`` removes it. On a stack that only renders its
    Kubernetes objects (``render_dir``) the kubernetes provider cannot read
    them back, so that refresh leaves them out (``--exclude``); the other
    steps read no Kubernetes object.
    """
    steps = []
    if stale:
        steps.append(f"pulumi cancel --stack {stack} --yes   # remove the stale lock")
    if any(p.operation == "creating" for p in pending):
        exclude = (f" --exclude 'urn:pulumi:{stack}::tradepulse-vault::**kubernetes:**'"
                   if render_only else "")
        steps.append(f"pulumi refresh --stack {stack} --yes --clear-pending-creates{exclude}"
                     "   # re-read from Vault, clear the pending operations")
    elif pending:
        steps.append(f"python -m rotation adopt-pending --stack {stack}   # record the "
                     "killed apply's writes that reached Vault, clear the pending operations")
    if pending:
        steps += [
            f"pulumi up --stack {stack}   # finish the apply",
            f"python -m rotation verify --stack {stack}   # live versions == declared",
        ]
    return steps


def backend_check(backend: str, stack: str, states: list[SecretState],
                  failures: list[str], render_only: bool = False
                  ) -> tuple[dict[str, Any], str, list[str]]:
    """Check the stack's lock and checkpoint: a running, a killed or a clean last update."""
    found = stack_locks(backend, "tradepulse-vault", stack)
    holders = lock_holders(backend, found)
    interrupted = pending_operations(backend, "tradepulse-vault", stack)
    lock = {"checked": True, "backend": found.backend, "locks": list(found.locks),
            "holders": [asdict(h) for h in holders],
            "pending_operations": [{**asdict(p), "name": p.name} for p in interrupted]}
    stale = bool(holders) and all(h.stale for h in holders)
    if found.locks and stale:
        failures.append(f"stack {stack}: stale Pulumi lock {holders[0].key} "
                        f"({holders[0].describe()})")
    elif found.locks:
        failures.append(f"a Pulumi update holds the lock on stack {stack} "
                        f"({holders[0].describe() if holders else found.locks[0]}); "
                        "wait for it to finish")
    if interrupted:
        failures.append(pending_message(stack, interrupted, states))
    text = f"{len(found.locks)} held in {found.backend}" + (
        f", {len(interrupted)} pending operation(s)" if interrupted else "")
    return lock, text, recovery_steps(stack, stale, interrupted, render_only)


def audit_check(client: hvac.Client, address: str, server_dir: Path | None,
                failures: list[str], warnings: list[str]) -> list[dict[str, str]]:
    """Probe the audit devices; a failing one is a pre-flight failure."""
    try:
        with vault_errors(address, "probing audit devices"):
            statuses = probe_audit_devices(client, server_dir)
    except CheckFailed as exc:
        warnings.append(f"audit devices not checked: {exc} (listing them needs sudo)")
        return []
    if not statuses:
        failures.append("no audit device is enabled: every rotation must be audited")
    for status in statuses:
        if status.state == "failing":
            failures.append(
                f"audit device {status.path} is failing ({status.detail}): Vault refuses "
                "requests once no audit device can log; fix it before rotating")
    return [asdict(s) for s in statuses]


def credential_preflight(
    client: hvac.Client, address: str, creds: list[Credential], failures: list[str]
) -> list[dict[str, Any]]:
    """Check the capabilities each rotation's apply-time write needs; record what is live."""
    if not creds:
        return []
    paths = sorted({c.action_path for c in creds})
    with vault_errors(address, "checking token capabilities on rotate endpoints"):
        answer = client.adapter.post("/v1/sys/capabilities-self", json={"paths": paths})
    data = response_data(answer)
    before = observe(client, address, creds)
    rows = []
    for cred in creds:
        caps = list(data.get(cred.action_path, []))
        missing = [c for c in cred.capabilities if c not in caps and "root" not in caps]
        if missing:
            hint = ("" if cred.kind in OPERATOR_KINDS else " (the root credential, JWT issuer "
                    "keys and revoking a role's leases are applied with the break-glass token)")
            failures.append(f"token lacks {missing} on {cred.action_path} (has "
                            f"{caps or ['deny']}){hint}")
        if cred.kind == "db-static-role" and not before[cred.id].get("last_vault_rotation"):
            failures.append(f"{cred.id}: the static role is not in Vault (or never rotated): "
                            "apply the stack that declares it before rotating it")
        if cred.kind == "jwt-key" and not before[cred.id].get("jwks_kids"):
            failures.append(f"{cred.id}: the JWKS publishes no key: verify could not tell a "
                            "new key id (apply the stack's issuer role first)")
        rows.append({"id": cred.id, "kind": cred.kind, "declared": cred.version,
                     "apply_path": cred.action_path, "capabilities": caps,
                     "before": before[cred.id]})
    return rows


def run(args: argparse.Namespace) -> Result:
    """Run every pre-flight check; exit 1 with every failure listed, 3 if Vault cannot serve."""
    target = targets(args)[0]
    root = repo_root(args.repo)
    # What is rotated comes from the repository: a bad --base or --secret is said before
    # Vault is asked anything.
    rotation = rotated_in(root, target, args.base, args.secret)
    node, client = follow_active(target.client(), target.vault.address)
    address, status = node.address, node.status
    # Every read below goes to the active node: a standby's reads can lag its writes.
    target = replace(target, vault=replace(target.vault, address=address))
    with progress_bar(f"{target.name}: reading KV metadata") as advance:
        states = secret_states(root, target, advance=advance)
    rotated = set(rotation.secrets)
    classified, failures, warnings = classify(states, rotated)
    pending = [s for s in states if classified[s.secret.id] == "pending"]
    paths = sorted({s.secret.data_path for s in pending})
    capabilities: dict[str, list[str]] = {}
    if paths:
        with vault_errors(address, "checking token capabilities"):
            answer = client.adapter.post("/v1/sys/capabilities-self", json={"paths": paths})
        data = response_data(answer)
        for path in paths:
            caps = list(data.get(path, []))
            capabilities[path] = caps
            needed = "create" if any(s.live is None for s in pending
                                     if s.secret.data_path == path) else "update"
            if needed not in caps and "root" not in caps:
                failures.append(f"token lacks {needed!r} on {path} (has {caps or ['deny']})")
            rollbacks = [s.secret for s in pending
                         if s.secret.data_path == path and s.secret.restores is not None]
            if rollbacks and "read" not in caps and "root" not in caps:
                # A dr mirror writes prod's restored data; verify then reads both versions.
                why = ("verify compares the mirrored rollback with that version"
                       if rollbacks[0].mirror_of else "a rollback reads the restored version")
                failures.append(f"token lacks 'read' on {path}: {why} from Vault's history "
                                f"(has {caps or ['deny']})")
    for state in states:  # every rotated rollback, in conflict as well as pending
        if state.secret.id not in rotated:
            continue
        with vault_errors(address, f"reading the version history of {state.secret.id}"):
            problem = restorable_problem(client, state.secret)
        if problem is not None:
            failures.append(problem)
    creds = [c for c in (credential(target.spec, cid) for cid in rotation.credentials)
             if c is not None]
    credential_rows = credential_preflight(client, address, creds, failures)
    audit = audit_check(client, address, args.server_dir, failures, warnings)
    lock: dict[str, Any] = {"checked": False}
    lock_text = "not checked (--skip-lock-check)"
    next_steps: list[str] = []
    if not args.skip_lock_check:
        backend = args.backend or os.environ.get("PULUMI_BACKEND_URL")
        if not backend:
            raise BadInput("no Pulumi backend to check the stack lock: pass --backend or set "
                           "PULUMI_BACKEND_URL (or --skip-lock-check)")
        lock, lock_text, next_steps = backend_check(backend, target.name, states, failures,
                                                    renders_only(target.spec))
        settle_interrupted(lock, states, classified, failures)
    secrets = [{"secret": s.secret.id, "declared": s.declared, "live": s.live_version,
                "state": classified[s.secret.id], "rotated": s.secret.id in rotated}
               for s in states]
    payload: dict[str, Any] = {
        "ok": not failures,
        "stack": target.name,
        "vault": {"address": display_url(address), "initialized": status.get("initialized"),
                  "sealed": status.get("sealed"), "standby": status.get("standby"),
                  "version": status.get("version"), "asked": display_url(node.asked),
                  "active_node": display_url(node.address), "followed_standby": node.followed,
                  "ha_enabled": node.ha_enabled},
        "secrets": secrets,
        "capabilities": capabilities,
        "credentials": credential_rows,
        "audit_devices": audit,
        "lock": lock,
        "warnings": warnings,
        "failures": failures,
        "next_steps": next_steps,
    }

    return Result(payload, _renderer(payload, node.describe(), lock_text),
                  exit_code=1 if failures else 0)


def _renderer(payload: dict[str, Any], node: str, lock_text: str) -> Callable[[TextIO], None]:
    """Return the text output: every check preflight made, in the order it made them."""

    def render(out: TextIO) -> None:
        out.write(f"Vault {node}: initialized, unsealed, active "
                  f"(version {payload['vault']['version']})\n")
        for entry in payload["secrets"]:
            out.write(f"  {entry['state']:<8} {entry['secret']} live={entry['live']} "
                      f"declared={entry['declared']}\n")
        if payload["capabilities"]:
            for path, caps in payload["capabilities"].items():
                out.write(f"token capabilities on {path}: {', '.join(caps) or 'deny'}\n")
        else:
            out.write("token capabilities: not checked (no pending secret to write)\n")
        for row in payload["credentials"]:
            out.write(f"  {row['kind']:<8} {row['id']} -> v{row['declared']}: token has "
                      f"{row['capabilities'] or ['deny']} on {row['apply_path']}\n")
        for device in payload["audit_devices"]:
            out.write(f"audit device {device['path']} ({device['type']}): {device['state']} "
                      f"- {device['detail']}\n")
        out.write(f"pulumi lock: {lock_text}\n")
        for warning in payload["warnings"]:
            out.write(f"WARN {warning}\n")
        for failure in payload["failures"]:
            out.write(f"FAIL {failure}\n")
        if payload["next_steps"]:
            out.write("next steps, in order:\n")
            for number, step in enumerate(payload["next_steps"], start=1):
                out.write(f"  {number}. {step}\n")
        out.write("preflight passed\n" if not payload["failures"] else "preflight FAILED\n")

    return render
