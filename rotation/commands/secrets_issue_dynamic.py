"""``secrets-issue-dynamic``: the runbook's dynamic credential rotation.

Issues database credentials for ``--role`` from the engine at ``--mount``,
writes them with their lease to ``--output`` (JSON, mode 0600, replaced
atomically so a reader never sees a partial or mixed file) and exits; with
``--watch`` it keeps the lease alive with
:class:`~rotation.dynamic.manager.DynamicCredentialManager`, rewrites the file on every
new credential (and every renewal, so ``expires_at`` stays true), and on
SIGTERM/SIGINT revokes the lease unless ``--no-revoke-on-exit``.

stdout carries identifiers only (lease id, role, mount, times, output path),
never the user name or password; those go to the file and nowhere else.
Before anything is issued the output path is checked, and leases a crashed
earlier run left in the journal beside the output file are revoked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from kernel import atomic
from kernel.redact import describe
from rotation.dynamic.journal import LeaseJournal, recover_journal
from rotation.dynamic.manager import CloseReport, Credential, DynamicCredentialManager
from rotation.dynamic.policy import DEFAULT_ESCALATE_AFTER_SECONDS, LeasePolicy
from rotation.errors import EXIT_INTERRUPTED, BadInput, Interrupted
from rotation.output import Result, log
from rotation.stacks import add_address_arguments, stackless_address
from rotation.vault import VaultTarget, connect

NAME = "secrets-issue-dynamic"
HELP = "issue database credentials from Vault into a 0600 JSON file; --watch keeps them alive"

DESCRIPTION = """\
Issue dynamic database credentials for ROLE and write them, with their lease,
to OUTPUT (JSON, mode 0600, replaced atomically). The token is read from the
environment variable named by --token-env (or the --env-file), never from an
argument. stdout shows the lease id, role and times, never the credentials.

One-shot by default: issue, write, exit (the lease lives out its TTL). With
--watch the lease is renewed the way Vault's lifetime watcher does it (about
2/3 into the lease, never later than --refresh-margin seconds before expiry);
when the role's max_ttl is reached, new credentials are issued before the old
ones expire, the file is swapped, and the old lease is revoked (or left to
expire with --replaced-lease expire). SIGTERM/SIGINT stop the watch and revoke
the lease (--no-revoke-on-exit keeps it). If Vault stays unreachable longer
than --escalate-after seconds the command stops with exit code 4.

A lease that was issued but could not be written is always revoked. Its id is
journalled in OUTPUT's directory until the write is done, so a run killed in
between is cleaned up by the next run.
"""


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {describe(text)}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds: {describe(text)}")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds: {describe(text)}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a whole number of seconds: {describe(text)}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds: {describe(text)}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the runbook's flags."""
    parser.description = DESCRIPTION
    add_address_arguments(parser)
    parser.add_argument("--mount", default="database",
                        help="database secrets engine mount (default: database)")
    parser.add_argument("--role", required=True, help="database role to issue credentials for")
    parser.add_argument("--token-env", default="VAULT_TOKEN", metavar="VAR",
                        help="environment variable holding the Vault token (default: VAULT_TOKEN)")
    parser.add_argument("--output", required=True, type=Path,
                        help="JSON file the runtime reads (written 0600, atomically)")
    parser.add_argument("--refresh-margin", type=_seconds, default=0.0, metavar="SECONDS",
                        help="act at least this long before the lease expires (default: 0, "
                             "the lifetime watcher's own grace)")
    parser.add_argument("--watch", action="store_true",
                        help="keep the lease alive and rewrite OUTPUT on every new credential")
    parser.add_argument("--revoke-on-exit", action=argparse.BooleanOptionalAction, default=True,
                        help="with --watch: revoke the lease on SIGTERM/SIGINT (default: yes)")
    parser.add_argument("--revoke-on-failure", action=argparse.BooleanOptionalAction,
                        default=True,
                        help="with --watch: revoke the lease when the watch fails, e.g. on "
                             "escalation (default: yes); a lease never written is always revoked")
    parser.add_argument("--replaced-lease", choices=("revoke", "expire"), default="revoke",
                        help="after max_ttl brings new credentials: revoke the old lease at once "
                             "(default) or leave it to expire")
    parser.add_argument("--increment", type=_positive_int, metavar="SECONDS",
                        help="renewal increment to ask for (default: the lease's own duration)")
    parser.add_argument("--escalate-after", type=_positive_seconds, metavar="SECONDS",
                        default=float(DEFAULT_ESCALATE_AFTER_SECONDS),
                        help="stop with exit 4 when Vault is unreachable this long (default: 300)")
    parser.add_argument("--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
                        help="HTTP timeout per Vault request (default: 10)")


def journal_path(output: Path) -> Path:
    """Return the lease journal kept beside ``output`` (ids only, never values)."""
    return output.with_name(f".{output.name}.pending-leases.json")


def check_output_path(output: Path) -> None:
    """Refuse an output path that cannot be written, before anything is issued.

    Missing parent directories are fine (they are created, mode 0700, right
    before the issue); the nearest existing ancestor must be a directory in
    which a file can actually be created (a probe file, removed at once:
    ``os.access`` says yes to root even on read-only mounts).
    """
    if output.is_dir():
        raise BadInput(f"--output {output} is a directory; name a file")
    ancestor = output.parent
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BadInput(f"--output {output}: {ancestor} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=ancestor)
    except OSError as exc:
        raise BadInput(f"--output {output}: cannot create files in {ancestor} ({exc.strerror})",
                       hint="pick a writable directory; nothing was issued") from None
    os.close(fd)
    os.unlink(probe)


class CredentialFile:
    """Writes credentials to the output file: whole documents, atomically, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes = 0

    def write(self, cred: Credential) -> None:
        """Replace the file with ``cred``'s document; raise :class:`BadInput` if it cannot."""
        text = json.dumps(cred.document(), indent=2, sort_keys=True) + "\n"
        try:
            atomic.write_text_atomic(self.path, text, mode=0o600)
        except OSError as exc:
            raise BadInput(f"cannot write credentials to {self.path} ({exc.strerror})",
                           hint="the lease issued for them is revoked") from None
        self.writes += 1

    def write_renewal(self, cred: Credential) -> None:
        """Rewrite after a renewal so ``expires_at`` stays true; a failure here only warns."""
        try:
            self.write(cred)
        except BadInput as exc:
            log.warning("%s; the credentials in it are still valid", exc)

    def lease_id(self) -> str | None:
        """Return the lease id the file currently holds (``None`` if none is readable)."""
        try:
            value = json.loads(self.path.read_text(encoding="utf-8")).get("lease_id")
        except (OSError, ValueError, AttributeError):
            return None
        return value if isinstance(value, str) else None


@contextlib.contextmanager
def _stop_on_signals(manager: DynamicCredentialManager) -> Iterator[list[str]]:
    """Turn the first SIGTERM/SIGINT into a clean stop; a second one interrupts at once."""
    received: list[str] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if manager.stopping:
            raise Interrupted(f"stopped by a second {name}")
        received.append(name)
        manager.stop()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _render(payload: dict[str, Any]) -> Any:
    def render(out: TextIO) -> None:
        if payload.get("stopped_by"):
            out.write(f"stopped by {payload['stopped_by']} after {payload['renewals']} "
                      f"renewal(s) and {payload['replacements']} replacement(s)\n")
            for lease_id in payload["revoked"]:
                out.write(f"  revoked lease {lease_id}\n")
            for lease_id in payload["not_revoked"]:
                out.write(f"  NOT revoked: {lease_id} "
                          f"(python -m rotation revoke --lease-id {lease_id})\n")
            if payload["left_alive"]:
                out.write(f"  left alive: {payload['lease_id']} until {payload['expires_at']}\n")
            return
        out.write(f"issued lease {payload['lease_id']}\n")
        out.write(f"  role:       {payload['role']} (mount {payload['mount']})\n")
        renewable = "renewable" if payload["renewable"] else "not renewable"
        out.write(f"  duration:   {payload['lease_duration']}s ({renewable})\n")
        out.write(f"  issued at:  {payload['issued_at']}\n")
        out.write(f"  expires at: {payload['expires_at']}\n")
        out.write(f"  written to: {payload['output']} (mode 0600)\n")
        for lease_id in payload["recovered_leases"]:
            out.write(f"  revoked leftover lease {lease_id} from an interrupted run\n")
    return render


def _missing_dirs(directory: Path) -> list[Path]:
    """Return ``directory`` and its missing ancestors, outermost first."""
    missing: list[Path] = []
    while not directory.exists() and directory.parent != directory:
        missing.insert(0, directory)
        directory = directory.parent
    return missing


@contextlib.contextmanager
def _created_dirs(directory: Path) -> Iterator[None]:
    """Create ``directory`` (mode 0700) for the run; remove what was created if it fails.

    A failed run must leave the filesystem as it found it: directories made
    for an output file that was never written are removed again (only while
    empty, so nothing else is ever deleted).
    """
    created = _missing_dirs(directory)
    try:
        for path in created:
            path.mkdir(mode=0o700)
    except OSError as exc:
        raise BadInput(f"cannot create {directory} ({exc.strerror})") from None
    try:
        yield
    except BaseException:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def run(args: argparse.Namespace) -> Result:
    """Issue (and with ``--watch`` keep alive) one role's credentials into ``--output``."""
    address = stackless_address(args)
    output: Path = args.output
    check_output_path(output)
    client = connect(VaultTarget(address, args.token_env), timeout=args.timeout)
    with _created_dirs(output.parent):
        return _run(args, client, output)


def _run(args: argparse.Namespace, client: Any, output: Path) -> Result:
    writer = CredentialFile(output)
    journal = LeaseJournal(journal_path(output))
    recovered = recover_journal(client, journal, keep=writer.lease_id())
    manager = DynamicCredentialManager(
        client, role=args.role, mount=args.mount, on_credential=writer.write,
        on_renewal=writer.write_renewal, journal=journal,
        policy=LeasePolicy(refresh_margin=args.refresh_margin, increment=args.increment,
                           replaced_lease=args.replaced_lease, revoke_on_stop=args.revoke_on_exit,
                           revoke_on_failure=args.revoke_on_failure,
                           escalate_after=args.escalate_after),
    )
    if not args.watch:
        cred = manager.issue()
        payload = {"ok": True, **cred.identifiers(), "output": str(output), "watch": False,
                   "recovered_leases": recovered}
        return Result(payload, _render(payload))

    with _stop_on_signals(manager) as received:
        # Handlers are in place before the issue: a SIGTERM during it stops cleanly.
        first = manager.issue() if not manager.stopping else None
        if first is not None:
            log.info("watching lease %s (credentials in %s)", first.lease_id, output)
        report: CloseReport = manager.run()
    return _watch_result(manager, report, received, output, recovered)


def _watch_result(manager: DynamicCredentialManager, report: CloseReport, received: list[str],
                  output: Path, recovered: list[str]) -> Result:
    cred = manager.current
    stats = manager.stats
    left_alive = cred is not None and cred.lease_id not in report.revoked \
        and cred.lease_id not in report.not_revoked
    payload: dict[str, Any] = {
        "ok": not report.not_revoked,
        **(cred.identifiers() if cred is not None else {"lease_id": None}),
        "output": str(output), "watch": True, "stopped_by": received[0] if received else "stop",
        "renewals": stats.renewals, "replacements": stats.replacements,
        "issued": stats.issued, "revoked": report.revoked, "not_revoked": report.not_revoked,
        "left_alive": left_alive, "recovered_leases": recovered,
    }
    return Result(payload, _render(payload), exit_code=EXIT_INTERRUPTED)
