"""Lease ids issued but not yet handed over, kept on disk so a killed run leaks none."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import hvac
import hvac.exceptions

from kernel.atomic import write_text_atomic
from rotation.dynamic.leases import revoke_lease
from rotation.errors import (
    BadInput,
)

log = logging.getLogger("rotation.dynamic")

_JOURNAL_HINT = ("make the --output file's directory writable and run again; a lease this run "
                 "issued and could not hand over is revoked (see the log)")


class LeaseJournal:
    """Lease ids issued but not yet handed over, on disk (mode 0600, ids only).

    An id is added the moment Vault answers and removed once the hand-over is
    done; a run that died in between leaves it here and the next run revokes
    it (:func:`recover_journal`). The file is removed when it is empty.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def pending(self) -> list[str]:
        """Return the ids in the journal (none when the file does not exist)."""
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            # The output location stopped being usable: bad input (exit 2), as for the file.
            raise BadInput(f"{self.path}: cannot read the lease journal ({exc.strerror})",
                           hint=_JOURNAL_HINT) from None
        try:
            doc = json.loads(raw)
            ids = doc["pending"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise BadInput(f"{self.path}: not a lease journal (expected {{\"pending\": [ids]}})",
                           hint="inspect it, revoke the ids it names, then delete it") from None
        return list(ids)

    def _write(self, ids: list[str]) -> None:
        try:
            if ids:
                write_text_atomic(self.path, json.dumps({"pending": ids}) + "\n", mode=0o600)
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
        except OSError as exc:
            raise BadInput(f"{self.path}: cannot write the lease journal ({exc.strerror})",
                           hint=_JOURNAL_HINT) from None

    def add(self, lease_id: str) -> None:
        """Record ``lease_id`` as issued and not handed over."""
        self._write([*self.pending(), lease_id])

    def remove(self, lease_id: str) -> None:
        """Forget ``lease_id`` (handed over, or revoked)."""
        self._write([i for i in self.pending() if i != lease_id])


def recover_journal(client: hvac.Client, journal: LeaseJournal, *,
                    keep: str | None = None) -> list[str]:
    """Revoke every lease a previous run left in ``journal`` (except ``keep``); return them.

    ``keep`` is the lease whose credentials the output file holds: that one
    was handed over after all (the run died before it could clear the entry).
    """
    revoked = []
    for lease_id in journal.pending():
        if lease_id != keep:
            revoke_lease(client, lease_id)
            log.warning("revoked lease %s: a previous run issued it but never handed it over",
                        lease_id)
            revoked.append(lease_id)
        journal.remove(lease_id)
    return revoked
