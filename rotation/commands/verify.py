"""``verify --stack ENV``: prove an applied rotation, with evidence for the ticket.

* every static secret's live ``current_version`` equals its declared version;
* each rotated secret (the plan of ``--base``..working tree, or ``--secret``)
  has its write in the audit log: an update of its data path that returned the
  declared version, with the request id;
* each ``--expect-leases ROLE`` has live leases under
  ``sys/leases/lookup/<mount>/creds/<role>``;
* ``--watch DURATION`` (the runbook's 15-minute watch) keeps reading the audit
  log and fails if a request on a rotated path or role fails in the window;
* each rotated JWT key, root credential, static role or lease generation is
  proven by :mod:`rotation.credential_checks` (its rotation request in the
  audit log, then what it changed), against what ``preflight --json`` saw
  before the apply (``--before``).
* a rotated secret that declares ``restores: M`` (a rollback): the live data of
  the declared version equals version M's, compared by SHA-256 digests of
  Vault's two responses (:mod:`rotation.rollback`; no value or digest is shown);
* ``--consumers``: every consumer of a rotated secret (every Kubernetes service
  when nothing was rotated) logs in through its own TokenRequest token and role
  and reads the new version; it is refused what it does not consume, and its
  token is refused by another service's role (:mod:`rotation.consumers`, through
  ``kubectl`` and ``--kubeconfig``/``--context``).

Everything is read on the active node: a standby given as the address is
followed (``rotation.cluster``), because its reads can lag the apply.

Exit 1 with everything that is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

import hvac
import hvac.exceptions

from kernel.redact import describe
from kernel.spec.credentials import credential
from rotation.audit_log import AuditEvent, events_from_file, write_evidence
from rotation.cluster import follow_active
from rotation.consumers import ConsumerCheck, check_consumers
from rotation.credential_checks import live_leases, verify_credential
from rotation.errors import BadInput
from rotation.kube import Cluster, add_kube_arguments
from rotation.live.declared import SecretState
from rotation.live.scan import secret_states
from rotation.output import Result, log
from rotation.planning import add_rotated_arguments, rotated_in
from rotation.progress import StatusLine, progress_bar
from rotation.rollback import previous_matches, restored_matches
from rotation.stacks import StackTarget, add_stack_arguments, repo_root, targets
from rotation.timefmt import format_duration, reformat, rfc3339_or_none
from rotation.vault import vault_errors

NAME = "verify"
HELP = "check live versions, audit events and leases after pulumi up"
_DURATION = re.compile(r"^(\d+)([smh]?)$")


def parse_duration(text: str) -> float:
    """Parse ``90``, ``30s``, ``15m`` or ``1h`` into seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise BadInput(f"--watch: {describe(text)} is not a duration like 30s, 15m or 1h")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register verify's arguments."""
    add_stack_arguments(parser)
    add_rotated_arguments(parser)
    parser.add_argument("--audit-log", type=Path,
                        help="file-audit log to search (default: the stack's file device path)")
    parser.add_argument("--expect-leases", action="append", default=[], metavar="ROLE",
                        help="database role that must have live leases (repeatable)")
    parser.add_argument("--watch", type=parse_duration, metavar="DURATION",
                        help="keep watching the audit log for failures, e.g. 15m")
    parser.add_argument("--before", type=Path, metavar="FILE",
                        help="preflight --json output taken before the apply: what JWT key "
                        "and static role rotations are compared with")
    parser.add_argument("--consumers", action="store_true",
                        help="log in as every consumer of the rotated secrets (TokenRequest "
                             "token, its own role) and read the new versions")
    add_kube_arguments(parser)


def read_before(path: Path | None) -> dict[str, dict[str, Any]]:
    """Return ``{credential id: what preflight observed}`` from a preflight ``--json`` file."""
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(c["id"]): dict(c["before"]) for c in doc.get("credentials", [])}
    except FileNotFoundError:
        raise BadInput(f"--before: {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise BadInput(f"--before: {path} is not preflight --json output") from None
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BadInput(f"--before: {path}: credentials[] entries need 'id' and 'before' "
                       "(preflight --json output)") from None


def consumer_cluster(args: argparse.Namespace, target: StackTarget) -> Cluster:
    """Check ``--consumers``' inputs before anything is read: auth method, kubeconfig."""
    spec = target.spec
    if spec.auth.kubernetes is None:
        raise BadInput(f"Pulumi.{target.name}.yaml: --consumers needs auth.kubernetes "
                       "(services log in with Kubernetes auth)")
    context = spec.delivery.context if spec.delivery is not None else None
    return Cluster.from_args(args, context)


def consumer_checks(cluster: Cluster, target: StackTarget, rotated: list[str],
                    declared: dict[str, int]) -> list[ConsumerCheck]:
    """Run ``--consumers``: the rotated secrets' consumers, or every service if none."""
    spec = target.spec
    scope = [s for s in (spec.secret(i) for i in rotated) if s is not None] if rotated \
        else list(spec.static_secrets)
    wanted = {c for s in scope for c in s.consumers} if rotated else None
    services = [s for s in spec.services if s.kubernetes is not None
                and (wanted is None or s.name in wanted)]
    return check_consumers(cluster, target.vault.address, spec, services, declared=declared,
                           scope=scope)


def audit_log_path(args: argparse.Namespace, target: StackTarget) -> Path | None:
    """Return ``--audit-log`` or the stack's first file audit device path, if readable."""
    if args.audit_log is not None:
        if not args.audit_log.is_file():
            raise BadInput(f"--audit-log: {args.audit_log} is not a readable file")
        return Path(args.audit_log)
    for device in target.spec.audit.devices:
        options = dict(device.options)
        if device.type == "file" and Path(options.get("file_path", "")).is_file():
            return Path(options["file_path"])
    return None


def history_checks(
    client: hvac.Client, address: str, states: list[SecretState], rotated: list[str],
    failures: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compare, by digest, what a rollback/retire or a kept previous value must equal.

    Returns ``(restored, previous_kept)``: per secret the version, the earlier
    version it was compared with, and whether the digests match (a mismatch is
    also a failure). Secrets not live at their declared version failed already.
    """
    restored: dict[str, Any] = {}
    previous: dict[str, Any] = {}
    for state in states:
        secret, declared = state.secret, state.declared
        if secret.id not in rotated or state.live_version != declared:
            continue
        for out, earlier, check, key, what in (
                (restored, secret.from_history, restored_matches, "data_matches",
                 "its data equals version {v}'s"),
                (previous, secret.previous, previous_matches, "kept",
                 "it keeps version {v}'s value as <KEY>_PREVIOUS")):
            if earlier is None:
                continue
            with vault_errors(address, f"reading versions {declared} and {earlier} of "
                              f"{secret.id} to compare digests"):
                matches = check(client, secret, declared)
            out[secret.id] = {"version": declared,
                              "restores" if out is restored else "previous": earlier,
                              key: matches}
            if not matches:
                failures.append(f"{secret.id}: version {declared}: not true that "
                                f"{what.format(v=earlier)} (compared by digest)")
    return restored, previous


def run(args: argparse.Namespace) -> Result:  # noqa: PLR0912, PLR0915 - one checklist
    """Run the checks; with ``--watch`` keep watching the audit log."""
    target = targets(args)[0]
    cluster = consumer_cluster(args, target) if args.consumers else None
    root = repo_root(args.repo)
    # What was rotated comes from the repository: a bad --base or --secret is said before
    # Vault is asked anything.
    rotation = rotated_in(root, target, args.base, args.secret)
    # A standby's reads can lag the apply that just wrote: verify on the active node.
    node, client = follow_active(target.client(), target.vault.address)
    address = node.address
    target = replace(target, vault=replace(target.vault, address=address))
    failures: list[str] = []
    with progress_bar(f"{target.name}: reading KV metadata") as advance:
        states = secret_states(root, target, advance=advance)
    for state in states:
        if state.live_version != state.declared:
            failures.append(f"{state.secret.id}: live version {state.live_version}, declared "
                            f"{state.declared}")
    shown_with_versions = set(failures)  # the text output prints these on their version line
    rotated = rotation.secrets
    log_path = audit_log_path(args, target)
    evidence: dict[str, Any] = {}
    offset = 0
    events: list[AuditEvent] = []
    if log_path is not None:
        events, offset = events_from_file(log_path)
    for secret_id in rotated:
        secret = target.spec.secret(secret_id)
        assert secret is not None
        declared = next(s.declared for s in states if s.secret.id == secret_id)
        if log_path is None:
            failures.append(f"{secret_id}: no audit log to search (pass --audit-log)")
            continue
        found = write_evidence(events, secret.data_path, declared)
        if found is None:
            failures.append(f"{secret_id}: no audit event for the write of version {declared} "
                            f"on {secret.data_path} in {log_path}")
        else:
            evidence[secret_id] = {**asdict(found), "time": reformat(found.time, exact=True)}
    restored, previous = history_checks(client, address, states, rotated, failures)
    before = read_before(args.before)
    credential_evidence: dict[str, Any] = {}
    for credential_id in rotation.credentials:
        cred = credential(target.spec, credential_id)
        assert cred is not None
        found_evidence, problems = verify_credential(
            client, cred, address=address, spec=target.spec,
            events=events if log_path is not None else None,
            before=before.get(credential_id))
        credential_evidence[credential_id] = found_evidence
        failures.extend(problems)
    leases: dict[str, int] = {}
    database = target.spec.database
    for role in args.expect_leases:
        if database is None or role not in {r.name for r in database.roles}:
            raise BadInput(f"Pulumi.{target.name}.yaml: --expect-leases {describe(role)} is not a "
                           "database role of this stack")
        with vault_errors(address, f"listing leases of {role}"):
            found_leases = live_leases(client, database.mount, role)
        leases[role] = len(found_leases)
        if not found_leases:
            failures.append(f"no live leases under sys/leases/lookup/{database.mount}/creds/"
                            f"{role}")
    consumers: list[ConsumerCheck] = []
    if cluster is not None:
        consumers = consumer_checks(cluster, target, rotated,
                                    {s.secret.id: s.declared for s in states})
        failures.extend(f for c in consumers for f in c.failures)
    watched: list[dict[str, Any]] = []
    if args.watch and log_path is not None and not failures:
        watch_paths = {target.spec.secret(s).data_path for s in rotated  # type: ignore[union-attr]
                       if target.spec.secret(s) is not None}
        if database is not None:
            watch_paths |= {f"{database.mount}/creds/{r}" for r in args.expect_leases}
        log.info("watching %s for failures on %d paths for %s", log_path, len(watch_paths),
                 format_duration(args.watch))
        passing = (f"{len(states)}/{len(states)} versions as declared, audit evidence for "
                   f"{len(evidence)}/{len(rotated)} rotated"
                   + (f", leases for {len(leases)} role(s)" if leases else ""))
        deadline = time.monotonic() + args.watch
        read = 0
        with StatusLine() as status:
            while (left := deadline - time.monotonic()) > 0:
                remaining = format_duration(math.ceil(left))
                status.update(f"verify --watch {target.name}: {remaining} left; {passing}; "
                              f"{len(watched)} failed request(s) on "
                              f"{len(watch_paths)} watched path(s), {read} audit events read")
                time.sleep(min(1.0, left))
                new_events, offset = events_from_file(log_path, offset)
                read += len(new_events)
                for event in new_events:
                    if event.error and event.path in watch_paths:
                        watched.append({**asdict(event), "time": reformat(event.time, exact=True)})
                        failures.append(f"{event.path}: request {event.request_id} failed at "
                                        f"{reformat(event.time)}: {event.error[:120]}")
            status.update(f"verify --watch {target.name}: done after "
                          f"{format_duration(args.watch)}; {len(watched)} failed request(s), "
                          f"{read} audit events read")
    versions = [{"secret": s.secret.id, "declared": s.declared, "live": s.live_version,
                 "updated_time": rfc3339_or_none(s.live.updated_time if s.live else None,
                                                 exact=True)} for s in states]
    payload: dict[str, Any] = {
        "ok": not failures,
        "stack": target.name,
        "active_node": address,
        "versions": versions,
        "rotated": rotated,
        "audit_log": str(log_path) if log_path else None,
        "audit_evidence": evidence,
        "restored": restored,
        "previous_kept": previous,
        "credentials": credential_evidence,
        "leases": leases,
        "consumers": [asdict(c) for c in consumers],
        "watch_failures": watched,
        "failures": failures,
    }

    def render(out: TextIO) -> None:
        for entry in versions:
            mark = "ok  " if entry["live"] == entry["declared"] else "FAIL"
            out.write(f"{mark} {entry['secret']} live={entry['live']} "
                      f"declared={entry['declared']}\n")
        for secret_id, found in evidence.items():
            out.write(f"audit: {secret_id} v{found['version']} written by request "
                      f"{found['request_id']} at {reformat(found['time'])}\n")
        for secret_id, entry in restored.items():
            mark = "ok  " if entry["data_matches"] else "FAIL"
            out.write(f"{mark} rollback: {secret_id} v{entry['version']} has the data of "
                      f"v{entry['restores']}: {'yes' if entry['data_matches'] else 'no'} "
                      "(SHA-256 of both versions' data, compared inside verify)\n")
        for credential_id, found in credential_evidence.items():
            audit = found.get("audit")
            out.write(f"{found['kind']}: {credential_id} v{found['version']}"
                      + (f" rotated by request {audit['request_id']} at {audit['time']}"
                         if audit else "") + "\n")
        for role, count in leases.items():
            out.write(f"leases: {role}: {count} live\n")
        for check in consumers:
            mark = "ok  " if not check.failures else "FAIL"
            versions_read = ", ".join(f"{k} v{v}" for k, v in check.secrets.items()) or "none"
            out.write(f"{mark} consumer {check.service} ({check.namespace}/"
                      f"{check.service_account}) logged in as {check.role}: read "
                      f"{versions_read}; database {', '.join(check.database_roles) or 'none'};"
                      f" refused {len(check.refused)} foreign\n")
        for failure in failures:
            if failure not in shown_with_versions:  # each failure once
                out.write(f"FAIL {failure}\n")
        out.write("verify passed\n" if not failures else "verify FAILED\n")

    return Result(payload, render, exit_code=1 if failures else 0)
