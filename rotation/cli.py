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
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, ModuleType

from rotation import errors, usage
from rotation.envfile import load_env_file
from rotation.output import Result, emit, emit_error, log, setup_logging


def _commands() -> list[ModuleType]:
    """Import every module of :mod:`rotation.commands` (one subcommand each), sorted by name."""
    from rotation import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__)
                   if not m.name.startswith("_"))
    return [importlib.import_module(f"rotation.commands.{name}") for name in names]


class UsageError(errors.BadInput):
    """argparse refused the arguments; ``main`` explains them with :mod:`rotation.usage`."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{prog}: {message}")
        self.prog = prog
        self.raw = message


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors get exit code 2 and JSON."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # The raw message is explained (and redacted where a value could be a
        # secret) by rotation.usage before anything is printed.
        raise UsageError(self.prog, message)


def _common_flags(default: object) -> _Parser:
    flags = _Parser(add_help=False)
    flags.add_argument("--json", action="store_true", default=default,
                       help="print only JSON on stdout")
    flags.add_argument("-v", "--verbose", action="store_true", default=default,
                       help="debug logs on stderr")
    return flags


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every subcommand registered."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """Return the top-level parser and each command's subparser by name."""
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
    commands: dict[str, argparse.ArgumentParser] = {}
    for module in _commands():
        cmd = sub.add_parser(
            module.NAME, help=module.HELP, description=module.HELP, parents=[sub_common],
            epilog=errors.EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.run)
        commands[module.NAME] = cmd
    return parser, commands


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise errors.Interrupted(f"stopped by {signal.Signals(signum).name}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one rotation command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args_list
    parser, commands = _build()
    try:
        args = parser.parse_args(args_list)
    except UsageError as exc:
        problem = usage.explain(args_list, exc.raw, prog=exc.prog, parsers=commands, top=parser)
        emit_error(problem.message, f"see `{problem.help_command} --help`",
                   errors.EXIT_BAD_INPUT, as_json=as_json)
        return errors.EXIT_BAD_INPUT
    except errors.BadInput as exc:  # a type= converter refused a value (its own message)
        position = usage.command_position(args_list, commands)
        where = f"{parser.prog} {args_list[position]}" if position is not None else parser.prog
        emit_error(str(exc), f"see `{where} --help`", errors.EXIT_BAD_INPUT, as_json=as_json)
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
