"""The summary `.ci/run` prints at its end: how long each phase of `make test` took.

The Makefile's phases (venv setup, system-deps, toolchain, lint, test) and the toolchain
build's components each append one line to ``$TRADEPULSE_PHASE_LOG`` when they end
(``make: <target> took N s``; ``--- [i/n] <component>: built in N s (CPU M s)``). This
reads those lines back so a slow cold run shows where its time went without searching the
log. A phase with no line did not run to its end in this run (it was up to date, was not
reached, or failed): the summary says so instead of printing a time.

Usage: python3 tools/phase_times.py --total SECONDS PHASE_LOG
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# The make targets of `make test`, in order. The venv's target is its stamp file
# (.venv/.deps-<hash of pyproject.toml>); the summary calls it setup.
PHASES = ("setup", "system-deps", "toolchain", "lint", "test")
VENV_STAMP = re.compile(r"(^|/)\.deps-[0-9a-f]+$")
MAKE_LINE = re.compile(r"^make: (?P<target>\S+) took (?P<seconds>\d+) s$")
COMPONENT_LINE = re.compile(
    r"^--- \[\d+/\d+\] (?P<name>[\w-]+): built in (?P<seconds>\d+) s \(CPU (?P<cpu>\d+) s\)$")


def summarize(lines: list[str], total: int) -> list[str]:
    """Return the summary's lines for the phase-log ``lines`` of a run of ``total`` s."""
    took: dict[str, int] = {}
    components: list[str] = []
    for line in lines:
        if m := MAKE_LINE.match(line.strip()):
            name = "setup" if VENV_STAMP.search(m["target"]) else m["target"]
            if name in PHASES:
                took[name] = took.get(name, 0) + int(m["seconds"])
        elif m := COMPONENT_LINE.match(line.strip()):
            components.append(f"{m['name']} {m['seconds']} s (CPU {m['cpu']} s)")
    parts = [f"{name} {took[name]} s" if name in took else f"{name} not timed"
             for name in PHASES]
    out = [f"ci: phases: {', '.join(parts)}; total {total} s"]
    missing = [name for name in PHASES if name not in took]
    if missing:
        out.append(f"ci: not timed means no end line in this run (up to date, not reached "
                   f"or failed): {', '.join(missing)}")
    if components:
        out.append(f"ci: toolchain components (built side by side): {', '.join(components)}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the summary of the phase log named on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, required=True, help="the whole run's seconds")
    parser.add_argument("phase_log", type=Path, help="the file the phases appended to")
    args = parser.parse_args(argv)
    try:
        lines = args.phase_log.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    for line in summarize(lines, args.total):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
