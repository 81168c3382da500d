"""How a spec problem is said: ``<file>: <key path>: <message> (line N)``.

One :class:`Problem` per thing wrong, at the key path a reviewer edits;
pydantic's errors are turned into problems here. The value at a wrong key may
be a token pasted into the wrong line, so a value is shown only when it is
plainly not a secret (:func:`kernel.redact.describe`); what the spec expects
(types, choices, bounds) is ours and always shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kernel import paths
from kernel.redact import describe, plainly_not_secret

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, at one key path."""

    path: KeyPath
    message: str
    line: int | None = None  # known when the spec was read from a file (kernel.spec.marks)

    def render(self, source: str) -> str:
        """Return ``<file>: <key path>: <message>`` (`` (line N)`` when known)."""
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{source}: {format_key_path(self.path)}: {self.message}{where}"


class SpecError(ValueError):
    """A stack file's spec is invalid; ``str()`` names the file and every key path."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


def format_key_path(path: KeyPath) -> str:
    """Render a key path as ``tradepulse-vault:spec.kv_mounts[0].path``."""
    out = paths.SPEC_CONFIG_KEY
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


_TYPES = {"int_type": "integer", "int_parsing": "integer", "bool_type": "boolean",
          "bool_parsing": "boolean", "string_type": "string", "dict_type": "object",
          "model_type": "object", "model_attributes_type": "object", "list_type": "array",
          "tuple_type": "array", "literal_error": None}

_BOUNDS = {
    "greater_than_equal": ("ge", "{shown} is out of range: must be at least {expected}"),
    "less_than_equal": ("le", "{shown} is out of range: must be at most {expected}"),
    "greater_than": ("gt", "{shown} is out of range: must be more than {expected}"),
    "less_than": ("lt", "{shown} is out of range: must be less than {expected}"),
    "string_pattern_mismatch": ("pattern", "{shown} does not match {expected!r}"),
    "string_too_short": ("min_length", "{shown} is too short: at least {expected} "
                         "character(s)"),
    "string_too_long": ("max_length", "{shown} is too long: at most {expected} character(s)"),
    "too_short": ("min_length", "{shown} has too few items: at least {expected}"),
    "too_long": ("max_length", "{shown} has too many items: at most {expected}"),
}


def _key_name(key: str | int) -> str | int:
    """Return ``key`` as it may be shown (a line pasted in the wrong place makes a secret a key)."""
    if isinstance(key, int) or plainly_not_secret(key):
        return key
    return f"<{len(key)}-character key>"


def _choices(expected: str) -> str:
    """Pydantic's ``'a', 'b' or 'c'`` as ``'a', 'b', 'c'``."""
    return ", ".join(part for chunk in expected.split(" or ") for part in chunk.split(", "))


def problems_of(error: ValidationError) -> list[Problem]:
    """Every problem in a pydantic ``error``, sorted by key path, each said once."""
    details = error.errors(include_url=False)
    inner = {tuple(d["loc"][:n]) for d in details for n in range(len(d["loc"]))}
    found: set[Problem] = set()
    for detail in details:
        # pydantic counts a list's items after validation: items that failed (reported
        # themselves) would also make the list "too short".
        if detail["type"] == "too_short" and tuple(detail["loc"]) in inner:
            continue
        found.update(_problems(detail))
    return sorted(found, key=lambda p: (format_key_path(p.path), p.message))


def _problems(detail: ErrorDetails) -> Iterable[Problem]:  # noqa: PLR0911 - one case a kind
    kind, ctx = detail["type"], detail.get("ctx") or {}
    loc: KeyPath = tuple(part for part in detail["loc"] if part != "[key]")
    shown = describe(detail.get("input"))
    if kind == "extra_forbidden":
        return [Problem((*loc[:-1], _key_name(loc[-1])), "unknown key")]
    if kind == "missing":
        return [Problem(loc, "required key is missing")]
    if kind == "not_together":
        message = f"not allowed together with {ctx['trigger']}: {ctx['reason']}"
        return [Problem((*loc, key), message) for key in ctx["keys"]]
    if kind == "alternatives":
        return [Problem(loc, detail["msg"])]
    if kind in {"unique_items", "vault_address"}:  # the message says what is wrong with it
        return [Problem(loc, f"{shown} {detail['msg']}")]
    if kind == "const":
        return [Problem((*loc, key), detail["msg"]) for key in ctx["keys"]]
    if kind == "literal_error":
        return [Problem(loc, f"{shown} is not one of {_choices(str(ctx['expected']))}")]
    if kind in _TYPES:
        return [Problem(loc, f"{shown} is not of type {_TYPES[kind]!r}")]
    if kind in _BOUNDS:
        name, template = _BOUNDS[kind]
        return [Problem(loc, template.format(shown=shown, expected=ctx[name]))]
    return [Problem(loc, f"{shown} is not valid here ({kind})")]

