"""``python -m rotation``: argument parsing and the one error boundary.

Each subcommand is a module in :mod:`rotation.commands` (found by listing the
package) with ``NAME``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> Result``. ``main``
parses, loads ``--env-file``, runs the command, renders its result, and maps
every :class:`~rotation.errors.RotationError` to its documented exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

from rotation import errors
from rotation.envfile import load_env_file
from rotation.output import Result, emit, emit_error, log, setup_logging


def _commands() -> list[ModuleType]:
    """Import every module of :mod:`rotation.commands` (one subcommand each), sorted by name."""
    from rotation import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                   if not m.name.startswith("_"))
    return [importlib.import_module(f"rotation.commands.{name}") for name in names]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get exit code 2 and JSON."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse quotes offending values; a secret pasted on the command line by
        # mistake must not be echoed back, so values are redacted.
        if message.startswith("unrecognized arguments"):
            message = "unrecognized arguments (not shown)"
        message = re.sub(r"'[^']*'", "'…'", message) if "invalid" in message else message
        raise errors.BadInput(f"{self.prog}: {message}")


def _common_flags(default: object) -> _Parser:
    flags = _Parser(add_help=False)
    flags.add_argument("--json", action="store_true", default=default,
                       help="print only JSON on stdout")
    flags.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="debug logs on stderr")
    return flags


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    common = _common_flags(default=False)
    # The subcommands accept the same flags; SUPPRESS keeps their defaults from
    # overwriting a --json/-v given before the subcommand.
    sub_common = _common_flags(default=argparse.SUPPRESS)
    parser = _Parser(
        prog="python -m rotation",
        description="Rotate TradePulse's Vault secrets through reviewed stack-file diffs.",
        epilog=errors.EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--env-file", type=Path,
                        help="KEY=VALUE file read before the command (set variables win)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in _commands():
        cmd = sub.add_parser(
            module.NAME, help=module.HELP, description=module.HELP, parents=[sub_common],
            epilog=errors.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
    return parser


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise errors.Interrupted(f"stopped by {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one rotation command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except errors.BadInput as exc:
        emit_error(str(exc), "see `python -m rotation --help`", errors.EXIT_BAD_INPUT,
                   as_json=as_json)
        return errors.EXIT_BAD_INPUT
    except SystemExit as exc:  # --help / --version printed by argparse
        return int(exc.code or 0)
    setup_logging(args.verbose)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        if args.env_file is not None:
            names = load_env_file(args.env_file)
            log.debug("read %d variables from %s", len(names), args.env_file)
        result: Result = args.handler(args)
        emit(result, as_json=args.json)
        return result.exit_code
    except errors.RotationError as exc:
        emit_error(str(exc), exc.hint, exc.exit_code, as_json=args.json)
        return exc.exit_code
    except KeyboardInterrupt:
        emit_error("interrupted", None, errors.EXIT_INTERRUPTED, as_json=args.json)
        return errors.EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
