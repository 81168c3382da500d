"""``adopt-pending --stack ENV``: after a killed ``pulumi up``, record its landed KV writes.

``preflight`` names this step when a killed update left a pending write on a
secret that Vault already holds at the declared version. Without it the next
``pulumi up`` writes the secret again with the previous check-and-set index and
Vault refuses (:mod:`rotation.interrupted` says why ``pulumi refresh`` cannot
repair it). Each pending write is checked against Vault first:

* live at the declared version and holding exactly the pending data: the
  killed apply's own write; it is recorded in the state (no write to Vault);
* live one version behind: the write did not land; ``pulumi up`` writes it;
* anything else (someone else wrote it): refused, exit 1, nothing changed.

Then every pending operation is cleared by ``pulumi stack import``. The stack
must not be locked (``pulumi cancel`` first). Values are compared in memory:
nothing of them is printed, logged or written outside Pulumi's own state.
"""

from __future__ import annotations

import argparse
import hmac
import os
from dataclasses import replace
from typing import Any, TextIO

from kernel.naming import resource_name
from kernel.redact import display_url
from rotation.cluster import follow_active
from rotation.errors import BadInput, CheckFailed
from rotation.interrupted import NotAdoptable, adopt, pending_writes
from rotation.live.scan import secret_states
from rotation.locks import stack_locks
from rotation.output import Result
from rotation.pulumi_cli import export_deployment, import_deployment
from rotation.stacks import add_stack_arguments, repo_root, targets
from rotation.vault import vault_errors

NAME = "adopt-pending"
HELP = "after a killed pulumi up: record its KV writes that reached Vault in the stack's state"
PROJECT = "tradepulse-vault"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the stack arguments and ``--backend``."""
    add_stack_arguments(parser)
    parser.add_argument("--backend", help="the stack's Pulumi backend URL, for the lock check "
                        "and the state (default: $PULUMI_BACKEND_URL)")


def _same_data(client: Any, mount: str, path: str, version: int,
               data: dict[str, str]) -> bool:
    """Tell whether Vault's ``version`` of the secret holds exactly ``data`` (never shown)."""
    answer = client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=mount, raise_on_deleted_version=True)
    live = answer["data"]["data"] or {}
    return set(live) == set(data) and all(
        isinstance(live[k], str) and hmac.compare_digest(live[k].encode(), data[k].encode())
        for k in data)


def run(args: argparse.Namespace) -> Result:
    """Check each pending write against Vault, record the landed ones, clear the rest."""
    target = targets(args)[0]
    root = repo_root(args.repo)
    backend = args.backend or os.environ.get("PULUMI_BACKEND_URL")
    if not backend:
        raise BadInput("no Pulumi backend: pass --backend or set PULUMI_BACKEND_URL")
    locks = stack_locks(backend, PROJECT, target.name)
    if locks.locks:
        raise CheckFailed(f"stack {target.name} is locked ({locks.locks[0]}); nothing was "
                          "changed", hint=f"a killed update's lock: pulumi cancel --stack "
                          f"{target.name} --yes (preflight tells whether it is stale)")
    node, client = follow_active(target.client(), target.vault.address)
    target = replace(target, vault=replace(target.vault, address=node.address))
    doc = export_deployment(root, target.name, backend)
    deployment = doc["deployment"]
    try:
        writes = pending_writes(deployment)
    except NotAdoptable as exc:
        raise CheckFailed(f"{exc}; nothing was changed") from None
    states = {resource_name("secret", s.secret.mount, *s.secret.path.split("/")): s
              for s in secret_states(root, target)}
    rows: list[dict[str, Any]] = []
    landed: set[str] = set()
    for write in writes:
        state = states.get(write.urn.rsplit("::", 1)[-1])
        if state is None:
            raise CheckFailed(f"{write.urn}: a pending write to a secret the stack does not "
                              "declare; nothing was changed")
        row = {"secret": state.secret.id, "urn": write.urn, "declared": state.declared,
               "live": state.live_version}
        if state.live_version == state.declared - 1:
            rows.append({**row, "outcome": "not landed: pulumi up writes it"})
            continue
        if state.live_version != state.declared:
            raise CheckFailed(f"{state.secret.id}: live version {state.live_version}, declared "
                              f"{state.declared}: not the killed apply's write; nothing was "
                              "changed (run preflight)")
        with vault_errors(node.address, f"reading version {state.declared} of "
                                        f"{state.secret.id}"):
            ours = _same_data(client, state.secret.mount, state.secret.path, state.declared,
                              write.data)
        if not ours:
            raise CheckFailed(f"{state.secret.id}: version {state.declared} holds other data "
                              "than the killed apply was writing: someone else wrote it; "
                              "nothing was changed (run preflight)")
        landed.add(write.urn)
        rows.append({**row, "outcome": "landed: recorded in the state"})
    cleared = len(deployment.get("pending_operations") or [])
    if cleared:  # with nothing pending the state is left as it is: no import
        try:
            adopt(deployment, landed)
        except NotAdoptable as exc:
            raise CheckFailed(f"{exc}; nothing was changed") from None
        import_deployment(root, target.name, backend, doc)
    payload = {"ok": True, "stack": target.name, "vault": display_url(node.address),
               "writes": rows, "pending_operations_cleared": cleared,
               "next": f"pulumi up --stack {target.name}"}
    return Result(payload, _render(payload))


def _render(payload: dict[str, Any]) -> Any:
    def render(out: TextIO) -> None:
        for row in payload["writes"]:
            out.write(f"  {row['secret']}: declared {row['declared']}, live {row['live']} - "
                      f"{row['outcome']}\n")
        out.write(f"stack {payload['stack']}: {payload['pending_operations_cleared']} pending "
                  f"operation(s) cleared; next: {payload['next']}\n")
    return render
