"""Which node of a Vault/OpenBao HA cluster is active, and a client that talks to it.

The runbook's first pre-rotation check is that Vault reports initialized,
unsealed and active. In an HA cluster the address an operator has may be a
standby. OpenBao's standbys do not refuse requests: they forward writes to the
active node over the cluster port (reads they answer from their own copy, which
can lag), and when forwarding is not possible (the
active node just died) they answer ``307`` to the active node's ``api_addr``
(seen on OpenBao 2.7.2, see docs/faults.md). So a standby is not a reason to
stop; it is a reason to say which node actually answers. :func:`follow_active`
reads ``sys/leader`` from the node asked and, for a standby, connects to the
active node it names and checks that node is active, so every later check
runs against - and every report names - the node that serves the writes.

A standby that knows no active node (an election is under way), or whose
active node cannot be reached from here, is refused with
:class:`~rotation.errors.VaultUnavailable` (exit 3), naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hvac

from rotation.errors import VaultUnavailable
from rotation.vault import DEFAULT_TIMEOUT_SECONDS, health, json_body, vault_errors


@dataclass(frozen=True)
class ActiveNode:
    """The node asked, what it said, and the active node the checks run against."""

    asked: str  # the address given (--address, the environment or the stack)
    address: str  # the active node's address (== asked unless a standby was followed)
    status: dict[str, Any]  # the active node's sys/health
    followed: bool  # True: ``asked`` is a standby and the checks run on ``address``
    ha_enabled: bool

    def describe(self) -> str:
        """One line for the operator: which node answered and how it was reached."""
        if self.followed:
            return f"{self.asked} is a standby; the active node is {self.address}"
        return f"{self.address} is the active node" if self.ha_enabled else self.address


def health_problems(status: dict[str, Any]) -> list[str]:
    """Why a ``sys/health`` answer cannot serve: not initialized, or sealed."""
    problems = []
    if not status.get("initialized"):
        problems.append("not initialized")
    if status.get("sealed"):
        problems.append("sealed")
    return problems


def leader(client: hvac.Client, address: str) -> dict[str, Any]:
    """``sys/leader`` of the node ``client`` talks to (unauthenticated, answered locally)."""
    with vault_errors(address, "reading sys/leader"):
        answer = client.sys.read_leader_status()
    return json_body(answer)


def follow_active(client: hvac.Client, address: str) -> tuple[ActiveNode, hvac.Client]:
    """Return the active node and a client for it (``client`` itself unless a standby).

    Raises :class:`VaultUnavailable` for a node that is not initialized or
    sealed, a standby that knows no active node, and an active node that
    cannot be reached or is not active when asked.
    """
    with vault_errors(address, "reading sys/health"):
        status = health(client)
    problems = health_problems(status)
    if problems:
        raise VaultUnavailable(f"Vault at {address} is {', '.join(problems)}",
                               hint="unseal or initialise it (or use another node); "
                                    "nothing was changed")
    if not status.get("standby"):
        ha = bool(leader(client, address).get("ha_enabled", False))
        return ActiveNode(address, address, status, followed=False, ha_enabled=ha), client
    active_address = str(leader(client, address).get("leader_address") or "")
    if not active_address:
        raise VaultUnavailable(
            f"Vault at {address} is a standby and knows no active node (an election is "
            "under way, or the cluster lost its quorum)",
            hint="retry in a few seconds; if no node becomes active, check the other "
                 "nodes (bao operator raft list-peers); nothing was changed")
    # The same session: TLS settings (CA, client certificate) carry over to the active node.
    active = hvac.Client(url=active_address, token=client.token, session=client.session,
                         timeout=DEFAULT_TIMEOUT_SECONDS)
    try:
        with vault_errors(active_address, "reading the active node's sys/health"):
            active_status = health(active)
    except VaultUnavailable:
        raise VaultUnavailable(
            f"Vault at {address} is a standby; the active node it names, {active_address}, "
            "cannot be reached from here",
            hint=f"run again with --address {active_address} (or through the load "
                 "balancer that fronts the active node); nothing was changed") from None
    if health_problems(active_status) or active_status.get("standby"):
        raise VaultUnavailable(
            f"Vault at {address} is a standby and names {active_address} as active, but that "
            f"node reports {'standby' if active_status.get('standby') else 'sealed'}: "
            "leadership is changing",
            hint="retry in a few seconds; nothing was changed")
    node = ActiveNode(address, active_address, active_status, followed=True, ha_enabled=True)
    return node, active
