"""Usage errors that show what was typed and what was probably meant.

argparse's own messages hide the cause of the commonest mistakes: a typo in a
flag (``--stakc local``) is reported as a missing required argument, an
unknown command lists every choice but not the near miss. This module turns
the raw argv and the parser's message into one line that names the word the
operator typed, suggests the closest known one ("did you mean ``drift``?")
and points at that subcommand's ``--help``.

What is shown: command names, flag names (never the ``=value`` part), stack
names. What is not: a stray positional word that is not a command or stack
name (it could be a value pasted by mistake), and the values of the flags
that name where secrets come from (``SECRET_FLAGS``).
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kernel.redact import describe, plainly_not_secret

# Flags whose argument is meant to be a variable *name* (or KEY=VARNAME) but where a
# hurried operator may paste the secret itself: their values are never echoed.
SECRET_FLAGS = frozenset({"--set", "--token-env", "--value-env"})
STACK_WORDS = frozenset({"prod", "staging", "dr", "local"})
_OPTION_IN_HELP = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
_INVALID_CHOICE = re.compile(r"^argument (?P<arg>[^:]+): invalid choice: '(?P<typed>[^']*)' "
                             r"\(choose from (?P<choices>.*)\)$")
_QUOTED = re.compile(r"'[^']*'")


@dataclass(frozen=True)
class UsageProblem:
    """A usage error explained: the message and which command's ``--help`` to read."""

    message: str
    help_command: str


def known_options(parser: argparse.ArgumentParser) -> dict[str, bool]:
    """Return every option string ``parser`` accepts and whether it takes a value.

    Read from the help text, argparse's public view of its options: each is
    listed with all its spellings and its metavar (``-v, --verbose``,
    ``--stack STACK``).
    """
    names: dict[str, bool] = {}
    for line in parser.format_help().splitlines():
        stripped = line.lstrip()
        if not stripped.startswith("-"):
            continue
        head = re.split(r"\s{2,}", stripped, maxsplit=1)[0]
        for spelling in head.split(", "):
            flag, _, metavar = spelling.partition(" ")
            if _OPTION_IN_HELP.fullmatch(flag):
                names[flag] = bool(metavar)
    return names


def positional_count(parser: argparse.ArgumentParser) -> int:
    """Return how many positional arguments ``parser`` takes (from its help text)."""
    count, inside = 0, False
    for line in parser.format_help().splitlines():
        if line.endswith(":") and not line.startswith(" "):
            inside = line == "positional arguments:"
        elif inside and line.startswith("  ") and not line[2:3].isspace():
            count += 1
    return count


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """Return the known word closest to ``word``, if one is close enough."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _resolve(flag: str, options: dict[str, bool]) -> str | None:
    """Return the option ``flag`` stands for (argparse accepts unambiguous prefixes)."""
    if flag in options:
        return flag
    matches = [o for o in options if flag.startswith("--") and o.startswith(flag)]
    return matches[0] if len(matches) == 1 else None


def _redact(message: str) -> str:
    """Hide quoted values in a message about a flag that can carry a secret.

    Other quoted values are shown only when plainly not a secret, else by
    their shape (:func:`kernel.redact.describe`): a token typed as ``--retries``
    is still a token.
    """
    if any(flag in message for flag in SECRET_FLAGS):
        return _QUOTED.sub("'…'", message)
    return _QUOTED.sub(lambda m: describe(m.group(0)[1:-1]), message)


def command_position(argv: Sequence[str], commands: Iterable[str]) -> int | None:
    """Return the index of the command name in ``argv`` (None if there is none)."""
    names = set(commands)
    skip_next = False
    for index, word in enumerate(argv):
        if skip_next:
            skip_next = False
        elif word == "--env-file":
            skip_next = True
        elif not word.startswith("-"):
            return index if word in names else None
    return None


@dataclass
class _Scan:
    """What follows the command name: unknown flags, words safe to show, hidden words."""

    unknown: list[str]
    shown: list[str]
    hidden: int


def _scan(words: Sequence[str], options: dict[str, bool], commands: Iterable[str],
          positionals: int) -> _Scan:
    names = set(commands)
    scan = _Scan([], [], 0)
    value_next = False
    for word in words:
        if word == "--":
            break
        if word.startswith("-") and not _is_negative_number(word):
            flag = word.split("=", 1)[0]  # never the =value part
            known = _resolve(flag, options)
            if known is None:
                scan.unknown.append(flag)
            value_next = "=" not in word and bool(known and options[known])
        elif value_next:
            value_next = False
        elif positionals:  # the command's own positional argument(s)
            positionals -= 1
        elif word in STACK_WORDS or word in names:
            scan.shown.append(word)
        else:
            scan.hidden += 1
    return scan


def _choice_problem(choice: re.Match[str], prog: str, top_prog: str, help_command: str,
                    commands: Iterable[str]) -> UsageProblem:
    typed, arg = choice.group("typed"), choice.group("arg")
    if arg == "COMMAND":
        names = sorted(commands)
        guess = suggest(typed, names)
        text = f"unknown command {describe(typed)}" + (f" (did you mean {guess!r}?)"
                                                        if guess else "")
        return UsageProblem(f"{top_prog}: {text}; commands: {', '.join(names)}", top_prog)
    choices = [c.strip().strip("'") for c in choice.group("choices").split(",")]
    guess = suggest(typed, choices)
    text = f"argument {arg}: {describe(typed)} is not one of {', '.join(choices)}"
    text += f" (did you mean {guess!r}?)" if guess else ""
    return UsageProblem(_redact(f"{prog}: {text}"), help_command)


def _extras_problem(scan: _Scan, message: str, help_command: str,
                    options: dict[str, bool]) -> UsageProblem:
    prog = help_command
    if scan.unknown:
        parts = []
        for flag in scan.unknown:
            guess = suggest(flag, sorted(options))
            # A secret pasted after "--" is still a secret (kernel.redact.describe).
            shown = flag if plainly_not_secret(flag) else describe(flag)
            parts.append(f"{shown} (did you mean {guess}?)" if guess else shown)
        text = f"unknown option{'s' if len(parts) > 1 else ''} " + ", ".join(parts)
        if not message.startswith("unrecognized arguments"):
            text += f"; {message}"
        return UsageProblem(_redact(f"{prog}: {text}"), help_command)
    unrecognized = message.startswith("unrecognized arguments")
    pieces = [] if unrecognized else [_redact(message)]
    if scan.shown:
        pieces.append(f"unexpected argument(s) {' '.join(scan.shown)}")
        stack = next((w for w in scan.shown if w in STACK_WORDS), None)
        if stack is not None and "--stack" in options:
            pieces[-1] += f" (did you mean --stack {stack}?)"
    if scan.hidden and (unrecognized or scan.shown):
        many = scan.hidden > 1
        pieces.append(f"{scan.hidden} {'more ' if scan.shown else ''}unexpected "
                      f"argument{'s' if many else ''} not shown ({'one' if many else 'it'} "
                      "could be a value; values go through --value-stdin, --value-env or "
                      "--set KEY=ENVVAR)")
    return UsageProblem(f"{prog}: " + "; ".join(pieces or [message]), help_command)


def explain(argv: Sequence[str], message: str, *, prog: str,
            parsers: dict[str, argparse.ArgumentParser],
            top: argparse.ArgumentParser) -> UsageProblem:
    """Turn argparse's ``message`` about ``argv`` into a message that shows what was typed.

    ``parsers`` maps command names to their subparsers; ``prog`` is the
    program name of the parser that complained.
    """
    position = command_position(argv, parsers)
    command = argv[position] if position is not None else None
    help_command = f"{top.prog} {command}" if command else top.prog
    choice = _INVALID_CHOICE.match(message)
    if choice:
        return _choice_problem(choice, prog, top.prog, help_command, parsers)
    if command is None or position is None:
        return UsageProblem(_redact(f"{prog}: {message}"), help_command)
    own = known_options(parsers[command])
    options = own | known_options(top)
    misplaced = [w.split("=", 1)[0] for w in argv[position + 1:]
                 if w.startswith("--") and _resolve(w.split("=", 1)[0], options) is not None
                 and _resolve(w.split("=", 1)[0], own) is None]
    if misplaced and message.startswith("unrecognized arguments"):
        flag = misplaced[0]
        return UsageProblem(f"{help_command}: {flag} goes before the command: "
                            f"{top.prog} {flag} ... {command} ...", f"{top.prog}")
    words = [*argv[:position], *argv[position + 1:]]
    scan = _scan(words, options, parsers, positional_count(parsers[command]))
    return _extras_problem(scan, message, help_command, options)


def _is_negative_number(token: str) -> bool:
    return bool(re.fullmatch(r"-\d+(\.\d+)?", token))
