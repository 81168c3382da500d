"""The rotation CLI's exception hierarchy and the exit code each maps to.

Exit codes (also in ``--help`` and the README):

====  ==========================================================
0     success
1     a check failed, or a write conflicted (CAS) - see the message
2     usage error or bad input (file and field named); nothing written
3     Vault unreachable, sealed, or standby
4     escalate: Vault unavailable longer than the runbook allows
5     the database behind Vault's database engine refused or did not answer
130   interrupted (SIGINT/SIGTERM)
====  ==========================================================

Messages never carry secret values: they name paths, keys, versions and files.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_VAULT_UNAVAILABLE = 3
EXIT_ESCALATE = 4
EXIT_DATABASE_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0    success
  1    a check failed or a write conflicted (check-and-set); see the message
  2    usage error or bad input (the file and field are named); nothing written
  3    Vault unreachable, sealed or standby
  4    escalate: Vault unavailable longer than the runbook's limit
  5    the database behind Vault refused or did not answer (Vault itself is up)
  130  interrupted (SIGINT/SIGTERM)
"""


class RotationError(Exception):
    """Base class: a failure with a message for the operator and an exit code."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class CheckFailed(RotationError):
    """A pre-flight, verification or drift check did not pass."""


class CasConflict(RotationError):
    """A check-and-set write was refused: the secret moved since it was read."""


class BadInput(RotationError):
    """Bad arguments, files or fields; nothing was written."""

    exit_code = EXIT_BAD_INPUT


class VaultUnavailable(RotationError):
    """Vault could not be reached, or is sealed or standby."""

    exit_code = EXIT_VAULT_UNAVAILABLE


class DatabaseUnavailable(VaultUnavailable):
    """Vault answered, but the database its database engine talks to did not.

    A subclass of :class:`VaultUnavailable` so that ``--watch`` retries it the
    same way, with its own exit code and message: the operator has to look at
    the database server, not at Vault or its audit devices.
    """

    exit_code = EXIT_DATABASE_UNAVAILABLE


class Escalation(RotationError):
    """Vault stayed unavailable past the runbook's limit: page the security on-call."""

    exit_code = EXIT_ESCALATE


class Interrupted(RotationError):
    """The command was stopped by a signal."""

    exit_code = EXIT_INTERRUPTED
