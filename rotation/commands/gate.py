"""``gate [--base REV] [--head REV]``: the offline checks a pull request must pass.

Runs in seconds with no Vault and no Pulumi CLI (see
:mod:`rotation.gates.offline`): stack files validate, ACL policies parse and
the capability matrix covers them, the plan of the pull request's diff (from
the merge base, with the capability diff on a throwaway OpenBao) has no errors
(classified changes are warnings; in strict stacks unacknowledged privilege
gains, weakening and destructive changes are errors), no plaintext secret is tracked,
and dr mirrors prod. Exit 0 when every check passes, 1 when one fails (the
report says which and why), 2 for an unknown revision or a broken allowlist.
``--json`` prints the report as JSON only.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from rotation.output import Result
from rotation.progress import StatusLine
from rotation.review.rules import parse_acknowledge
from rotation.stacks import repo_root

NAME = "gate"
HELP = "offline pull-request gate: stack files, ACL policies, rotation plan, secrets, dr mirrors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register gate's arguments."""
    parser.add_argument("--base", default="HEAD",
                        help="the branch the pull request merges into (default: HEAD; in CI "
                        "the pull request's base commit); the diff starts at the merge base "
                        "of it and the head")
    parser.add_argument("--head", help="new revision of the plan diff (default: the working "
                        "tree); the other checks always read the working tree")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--allowlist", type=Path,
                        help="secret-scan allowlist (default: rotation/gates/"
                        "secret_allowlist.yaml)")
    parser.add_argument("--acknowledge", action="append", default=[], metavar="CLASSES",
                        help="comma-separated classes this pull request acknowledges in strict "
                        "stacks: privilege, weakening, destructive (CI: the PR's "
                        "acknowledge:<class> labels)")
    parser.epilog = ("checks: stack-files, acl-policies, rotation-plan, secrets, dr-mirrors"
                     f"\n\n{parser.epilog or ''}")


def run(args: argparse.Namespace) -> Result:
    """Run every check and report."""
    # Imported here: detect-secrets is only needed when the gate runs, not by every command.
    from rotation.gates.offline import run_gate
    from rotation.gates.secret_scan import ALLOWLIST_FILE

    root = repo_root(args.repo)
    acknowledge = parse_acknowledge(args.acknowledge)
    with StatusLine() as status:  # a secret scan takes seconds: show it is working
        status.update("gate: checking stack files, ACL policies, the rotation plan (with the "
                      "capability diff), tracked files for secrets and dr mirrors")
        report = run_gate(root, args.base, args.head,
                          allowlist=args.allowlist or ALLOWLIST_FILE, acknowledge=acknowledge)

    def render(out: TextIO) -> None:
        report.render(out)

    return Result(report.to_json(), render, exit_code=0 if report.ok else 1)
