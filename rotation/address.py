"""The one rule every command uses to find Vault.

1. ``--address`` on the command line;
2. else ``VAULT_ADDR`` (HashiCorp's variable), else ``BAO_ADDR`` (OpenBao's),
   as set in the environment or read from ``--env-file``;
3. else the stack's declared ``vault.address`` in ``Pulumi.<stack>.yaml``
   (commands without a stack take ``--stack`` for this fallback).

Where the address came from travels with it (:class:`Address.source`), so a
"cannot reach Vault" message can say which of the three to check. With
``--all`` an override (1 or 2) would send every stack to one server; when the
stacks declare different addresses that is refused (exit 2) rather than
reporting one Vault's versions as another's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kernel.redact import describe
from kernel.vault_address import address_problem
from rotation.errors import BadInput

ADDRESS_VARIABLES = ("VAULT_ADDR", "BAO_ADDR")
FROM_FLAG = "--address"
RULE = ("--address, else VAULT_ADDR, else BAO_ADDR, else the stack's vault.address "
        "(Pulumi.<stack>.yaml)")

# address -> where it came from, for messages raised far from where it was resolved.
_SOURCES: dict[str, str] = {}


@dataclass(frozen=True)
class Address:
    """A Vault address and where it came from (``--address``, a variable or a stack file)."""

    url: str
    source: str

    @property
    def overridden(self) -> bool:
        """True when the address did not come from a stack file."""
        return self.source == FROM_FLAG or self.source in ADDRESS_VARIABLES


def _checked(url: str, source: str) -> Address:
    value = url.strip().rstrip("/")
    problem = address_problem(value)
    if problem is not None:
        raise BadInput(f"Vault address {describe(value)} (from {source}) {problem}")
    _SOURCES[value] = source
    return Address(value, source)


def resolve(explicit: str | None, *, declared: str | None = None,
            declared_in: str | None = None,
            environ: Mapping[str, str] | None = None) -> Address:
    """Apply the rule; :class:`BadInput` when no step gives an address."""
    env = os.environ if environ is None else environ
    if explicit:
        return _checked(explicit, FROM_FLAG)
    for name in ADDRESS_VARIABLES:
        if env.get(name, "").strip():
            return _checked(env[name], name)
    if declared:
        return _checked(declared, f"{declared_in or 'the stack file'} vault.address")
    raise BadInput("no Vault address: pass --address, set VAULT_ADDR (or BAO_ADDR), or name a "
                   "stack with --stack to use its declared vault.address",
                   hint="e.g. --address https://vault.tradepulse.internal:8200")


def source_of(url: str) -> str | None:
    """Return where ``url`` came from, if this process resolved it."""
    return _SOURCES.get(url.rstrip("/"))


def unreachable_hint(url: str) -> str:
    """Return the hint for an unreachable Vault: which setting gave its address."""
    source = source_of(url)
    where = f"the address came from {source}; " if source else ""
    return (f"{where}check it and the network (precedence: {RULE}); escalate after "
            "5 minutes")
