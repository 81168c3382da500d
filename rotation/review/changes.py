"""What a reviewer is shown for one change that is not a rotation: class, who, field, old -> new.

Every change of a pull request falls in one class:

``configuration``
    changes nothing about who may do what or how safe Vault is (a description,
    a workload name, a new mount or secret, a stronger setting).
``privilege``
    who may log in as which principal, with which policies, for how long:
    policy files, service and CI role -> policy bindings, role bindings
    (namespace, service account, audience, repository, branch or pull
    requests, deployment environment), token TTLs. What a principal gains or
    loses is computed on the real policy engine (:mod:`rotation.review.privilege`).
``weakening``
    makes Vault or this review less safe: audit devices and their options,
    CAS, version history, generator strength, TTL caps, break-glass, the Vault
    address, issuers and key sources, the secrets provider, strictness, the
    capability matrix, the gate's own allowlist and code.
``destructive``
    removes something whose state cannot come back by reverting the file: a
    secret (a renamed path is a removal: its versions restart), a mount, an
    auth method, a policy, a stack.

(A rotation is a :class:`rotation.planning.Rotation`, not a change.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CONFIGURATION = "configuration"
PRIVILEGE = "privilege"
WEAKENING = "weakening"
DESTRUCTIVE = "destructive"
KINDS = (CONFIGURATION, PRIVILEGE, WEAKENING, DESTRUCTIVE)
# The classes a strict stack refuses unless the pull request acknowledges them.
ACKNOWLEDGEABLE = (PRIVILEGE, WEAKENING, DESTRUCTIVE)
REPOSITORY = "*"  # the stack of a change that applies to every stack (policy files, gate code)
ABSENT = "(none)"


@dataclass
class Change:
    """One change a reviewer must judge, in words: who or what, which field, old -> new.

    ``gain`` is False for a change that can only narrow access or strengthen
    (a lower token TTL, capabilities only lost); only gains need acknowledging.
    ``always`` marks a change that needs acknowledging in any stack, strict or
    not (a new stack; a sudo holder bound to a role, or declared in a non-strict
    stack).
    """

    kind: str
    stack: str
    subject: str
    field: str
    old: str
    new: str
    why: str = ""
    gain: bool = True
    location: str = ""
    always: bool = False

    def render(self) -> str:
        """Return the change as one line of plain text."""
        where = "every stack" if self.stack == REPOSITORY else self.stack
        why = f" ({self.why})" if self.why else ""
        return (f"{self.kind}: {where}: {self.subject}: {self.field}: {self.old} -> "
                f"{self.new}{why}")

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(vars(self))


def duration(seconds: int) -> str:
    """Return ``seconds`` as ``3600 s (1h)``: the number and a unit a reviewer reads."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds} s ({seconds // size}{unit})"
    return f"{seconds} s"


def show(value: object, *, key: str = "") -> str:
    """Return a spec value as a reviewer reads it (lists joined, durations with units)."""
    if value is None:
        return ABSENT
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and key.endswith("_seconds"):
        return duration(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]" if value else "[]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v, key=str(k))}" for k, v in value.items()) + "}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."
