"""``drift``: declared static-secret versions against live KV v2 ``current_version``.

For every static secret of the stack(s) the live metadata is read (never the
data) concurrently - 8 worker threads, one keep-alive connection each (``rotation.live``) -
with a progress bar on stderr when stderr is a terminal. Each secret is one of:

* ``in_sync``      live version == declared version
* ``pending``      declared ahead of live: bumped here, not applied yet
* ``drifted``      live ahead of declared: written outside this repository
* ``missing``      not in Vault at all
* ``lagging_prod`` a dr mirror (``mirror_of: prod``) behind the version
  ``Pulumi.prod.yaml`` declares

A mirror's declared version is its origin stack's declared version. The
declared-versions and concurrent-read helpers here are shared with ``due``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from rotation import stacks
from rotation.errors import BadInput
from rotation.kv import LiveMetadata
from rotation.live import Declared, declare, read_live
from rotation.output import Result

NAME = "drift"
HELP = "compare declared static-secret versions with live KV v2 versions"

IN_SYNC = "in_sync"
PENDING = "pending"
DRIFTED = "drifted"
MISSING = "missing"
LAGGING_PROD = "lagging_prod"
STATES = (IN_SYNC, PENDING, DRIFTED, MISSING, LAGGING_PROD)
FAILING = frozenset({DRIFTED, MISSING, LAGGING_PROD})


DESCRIPTION = """\
Compare each static secret's declared version (Pulumi.<stack>.yaml) with the
live KV v2 current_version, reading metadata only (never values), concurrently.

states:
  in_sync       live version == declared version
  pending       declared ahead of live: bumped in the repo, `pulumi up` not run yet
  drifted       live ahead of declared: someone wrote it outside this repository
  missing       the secret does not exist in Vault
  lagging_prod  a dr mirror (mirror_of: prod) behind the version Pulumi.prod.yaml
                declares (a mirror's declared version is prod's)

Exit 1 if anything is drifted, missing or lagging_prod. `pending` alone exits 0
(it is the normal state between merging a bump and applying it) but is reported;
--fail-on-pending makes it exit 1 too (e.g. in CI right after `pulumi up`).
"""


def declared_secrets(args: argparse.Namespace) -> tuple[list[stacks.StackTarget],
                                                        list[Declared]]:
    """Resolve ``--stack``/``--all`` and every static secret's declared version."""
    targets = stacks.targets(args)
    return targets, declare(stacks.repo_root(args.repo), targets)


def classify(d: Declared, live: LiveMetadata | None) -> str:
    """Return the drift state of one secret."""
    if live is None or live.current_version == 0:
        return MISSING
    if d.version is None:  # the schema requires one; never guess a state without it
        raise BadInput(f"{d.declared_in}: {d.secret.id} declares no version")
    if live.current_version == d.version:
        return IN_SYNC
    if live.current_version > d.version:
        return DRIFTED
    return LAGGING_PROD if d.secret.mirror_of is not None else PENDING


def _note(state: str, d: Declared, live: LiveMetadata | None,
          origin_live: int | None) -> str:
    if state == MISSING:
        return "not in Vault: apply the stack (or restore the secret)"
    assert live is not None
    if state == PENDING:
        return f"v{d.version} declared, not applied yet: run pulumi up"
    if state == DRIFTED:
        updated = live.updated_time
        when = f" at {updated.isoformat(timespec='seconds')}" if updated else ""
        return (f"live v{live.current_version} ahead of declared v{d.version}: written "
                f"outside this repo{when}")
    if state == LAGGING_PROD:
        extra = f" (live there: v{origin_live})" if origin_live is not None else ""
        return (f"{d.stack} at v{live.current_version}, {d.declared_in} declares "
                f"v{d.version}{extra}: apply {d.stack}")
    return ""


def drift_report(declared: Sequence[Declared],
                 live: dict[tuple[str, str], LiveMetadata | None]) -> list[dict[str, Any]]:
    """One JSON-able row per secret, in stack-file order."""
    rows = []
    for d in declared:
        meta = live.get(d.key)
        state = classify(d, meta)
        updated = meta.updated_time if meta else None
        origin_live: int | None = None
        if d.secret.mirror_of is not None:
            origin_meta = live.get((d.secret.mirror_of, d.secret.id))
            origin_live = origin_meta.current_version if origin_meta else None
        rows.append({
            "stack": d.stack,
            "address": d.vault.address,
            "id": d.secret.id,
            "mount": d.secret.mount,
            "path": d.secret.path,
            "source": d.secret.source,
            "declared_version": d.version,
            "declared_in": d.declared_in,
            "live_version": meta.current_version if meta else None,
            "live_updated_time": updated.isoformat() if updated else None,
            "mirror_of": d.secret.mirror_of,
            "origin_live_version": origin_live,
            "state": state,
            "note": _note(state, d, meta, origin_live),
        })
    return rows


def text_console(out: TextIO) -> Console:
    """Return a rich console for text output: plain, 200 wide unless ``out`` is a terminal."""
    terminal = out.isatty()
    return Console(file=out, highlight=False, markup=False, width=None if terminal else 200,
                   force_terminal=terminal)


_STYLE = {IN_SYNC: "green", PENDING: "yellow", DRIFTED: "red", MISSING: "red",
          LAGGING_PROD: "red"}


def render_rows(rows: list[dict[str, Any]], summary: dict[str, int],
                failing: Iterable[str]) -> Callable[[TextIO], None]:
    """Return the text renderer: a rich table and a one-line summary."""
    failing = frozenset(failing)

    def render(out: TextIO) -> None:
        console = text_console(out)
        table = Table(title="static secret drift", title_justify="left")
        for column in ("stack", "secret", "declared", "live", "state", "note"):
            table.add_column(column, no_wrap=column != "note")
        for row in rows:
            live = "-" if row["live_version"] is None else str(row["live_version"])
            declared = str(row["declared_version"])
            if row["mirror_of"]:
                declared += f" ({row['declared_in']})"
            table.add_row(row["stack"], row["id"], declared, live, row["state"], row["note"],
                          style=_STYLE[row["state"]] if out.isatty() else None)
        console.print(table)
        parts = ", ".join(f"{summary[s]} {s}" for s in STATES)
        verdict = "FAIL" if any(summary[s] for s in failing) else "ok"
        console.print(f"drift {verdict}: {parts}")

    return render


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register drift's arguments."""
    parser.description = DESCRIPTION
    stacks.add_stack_arguments(parser, allow_all=True)
    parser.add_argument("--fail-on-pending", action="store_true",
                        help="exit 1 on pending secrets too (default: pending is reported, "
                             "exit 0)")


def run(args: argparse.Namespace) -> Result:
    """Read live versions and classify every declared static secret."""
    targets, declared = declared_secrets(args)
    live = read_live(declared, description="drift: reading KV metadata")
    rows = drift_report(declared, live)
    summary = {state: sum(1 for r in rows if r["state"] == state) for state in STATES}
    failing = set(FAILING) | ({PENDING} if args.fail_on_pending else set())
    ok = not any(summary[s] for s in failing)
    payload = {
        "ok": ok,
        "stacks": [{"stack": t.name, "address": t.vault.address} for t in targets],
        "summary": summary,
        "failing_states": sorted(failing),
        "secrets": rows,
    }
    return Result(payload, render_rows(rows, summary, failing), exit_code=0 if ok else 1)
