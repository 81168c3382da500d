"""``plan [--base REV] [--head REV]``: the rotation plan of a diff, for the PR and the ops channel.

The diff is the head against the merge base of ``--base`` and the head (what
the branch changed). Every change is classified and shown as old -> new, and
each principal's capability gains and losses are computed on a throwaway
OpenBao (see :mod:`rotation.planning`). Markdown (a pull-request comment) by
default, JSON with ``--json``.
``--announce`` posts the summary to the chat incoming-webhook whose URL is in
``$ROTATION_ANNOUNCE_WEBHOOK`` (the runbook's announcement in #tradepulse-ops),
tagging the security liaison named in ``$ROTATION_SECURITY_LIAISON``.
Exit 1 when the diff has errors (a version moved by other than +1 or not a
canonical integer, a provided secret's ciphertext and version out of step or
replayed, an invalid stack file, an unacknowledged privilege gain, weakening
or destructive change in a strict stack, rotations mixed with other changes);
with ``--strict`` also when it changes anything that is not a rotation.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

import requests

from rotation.errors import BadInput, CheckFailed
from rotation.output import Result, log
from rotation.planning import Plan, build_plan, render_markdown
from rotation.review.rules import parse_acknowledge
from rotation.stacks import repo_root

NAME = "plan"
HELP = "show what a diff of the stack files rotates, and flag anything else it changes"
WEBHOOK_ENV = "ROTATION_ANNOUNCE_WEBHOOK"
LIAISON_ENV = "ROTATION_SECURITY_LIAISON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register plan's arguments."""
    parser.add_argument("--base", default="HEAD",
                        help="the branch merged into (default: HEAD); the diff starts at the "
                        "merge base of it and the head (three-dot)")
    parser.add_argument("--head", help="new revision (default: the working tree)")
    parser.add_argument("--repo", type=Path, help="repository root (default: git top level)")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 1) on any change that is not a rotation")
    parser.add_argument("--acknowledge", action="append", default=[], metavar="CLASSES",
                        help="comma-separated classes acknowledged in strict stacks: "
                        "privilege, weakening, destructive")
    parser.add_argument("--announce", action="store_true",
                        help=f"post the summary to the webhook in ${WEBHOOK_ENV}")


def announcement(plan: Plan, liaison: str) -> str:
    """Return the one-message summary for the ops channel."""
    if not plan.rotations:
        return f"No secret rotations planned ({plan.base} → {plan.head}). cc {liaison}"
    items = "; ".join(f"{r.stack} {r.secret} v{r.old_version}→v{r.new_version}"
                      for r in plan.rotations)
    return f"Rotation window: {items}. cc {liaison}"


def post(url: str, text: str) -> None:
    """POST ``{"text": ...}`` to an incoming-webhook URL (Slack/Mattermost style)."""
    try:
        response = requests.post(url, json={"text": text}, timeout=10)
    except requests.RequestException as exc:
        raise CheckFailed(f"announcement failed: {type(exc).__name__} posting to the webhook",
                          hint=f"check ${WEBHOOK_ENV}; the plan itself is fine") from None
    if response.status_code >= 300:
        raise CheckFailed(f"announcement failed: webhook answered HTTP {response.status_code}")


def run(args: argparse.Namespace) -> Result:
    """Build the plan, optionally announce it, and report."""
    root = repo_root(args.repo)
    plan = build_plan(root, args.base, args.head,
                      acknowledge=parse_acknowledge(args.acknowledge), with_privilege=True)
    payload = plan.to_json()
    if args.announce:
        url = os.environ.get(WEBHOOK_ENV)
        if not url:
            raise BadInput(f"--announce needs the webhook URL in ${WEBHOOK_ENV}")
        text = announcement(plan, os.environ.get(LIAISON_ENV, "@security-liaison"))
        post(url, text)
        log.info("announced the rotation plan to the ops channel")
        payload["announced"] = text
    failed = bool(plan.errors) or (args.strict and bool(plan.changes))
    payload["ok"] = not failed

    def render(out: TextIO) -> None:
        out.write(render_markdown(plan))

    return Result(payload, render, exit_code=1 if failed else 0)
