"""Declared secret versions are integer literals in one canonical form, judged from the text.

A version is what a rotation moves by one and what ``cas`` is computed from,
so ``bump``, ``plan`` and the gate must read it the same way. YAML reads more
than one spelling as a number: ``010`` is 8 to PyYAML (YAML 1.1 octal) and 10
to ruamel, ``10.0`` is a float that JSON Schema's ``integer`` accepts, and
``1_0``, ``+10`` and ``0x0a`` are integers too. Only the text tells them apart,
so the rule is checked on the scalar as written: a plain (unquoted, untagged
by hand) decimal literal without sign, separators or leading zeros.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from kernel import paths
from kernel.spec.messages import Problem

CANONICAL = re.compile(r"0|[1-9][0-9]*")
_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"
_PLAIN_STYLES = (None, "")  # a plain scalar: PyYAML says None, libyaml says ""


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    return None


def is_canonical(literal: str) -> bool:
    """Return whether ``literal`` is a version written canonically (``10``, not ``010``)."""
    return CANONICAL.fullmatch(literal) is not None


def literal_problem(node: yaml.Node) -> str | None:
    """Return what is wrong with a version's YAML node, or None when it is canonical."""
    if not isinstance(node, yaml.ScalarNode) or node.style not in _PLAIN_STYLES:
        return ("not a plain integer literal; write the version as an unquoted decimal "
                "number, e.g. 10")
    if node.tag != _INT_TAG or not is_canonical(node.value):
        return (f"{node.value[:20]!r} is not a canonical integer; write it as a decimal "
                "number without sign, separators, decimal point or leading zeros (e.g. 10, "
                "not 010 or 10.0)")
    return None


def version_literal_marks(root: yaml.Node | None) -> list[tuple[int, int, str]]:
    """Return ``(index, line, problem)`` per ``static_secrets[index].version`` not canonical."""
    secrets = _get(_get(_get(root, "config"), paths.SPEC_CONFIG_KEY), "static_secrets")
    if not isinstance(secrets, yaml.SequenceNode):
        return []
    out: list[tuple[int, int, str]] = []
    for index, item in enumerate(secrets.value):
        version = _get(item, "version")
        problem = None if version is None else literal_problem(version)
        if version is not None and problem is not None:
            out.append((index, version.start_mark.line + 1, problem))
    return out


def version_literal_problems(text: str, source: str, *, root: yaml.Node | None = None
                             ) -> list[str]:
    """Return one message per ``static_secrets[i].version`` not written as a canonical integer.

    Messages name the file, the key path and the line (as every spec problem:
    :class:`kernel.spec.messages.Problem`); they quote the literal
    (a version number, never a secret). Text that is not YAML gives no
    problems here: the loader reports it.
    """
    if root is None:  # ``root``: the node tree of ``text`` when the caller has parsed it
        try:
            root = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:
            return []
    return [Problem(("static_secrets", index, "version"), problem, line=line).render(source)
            for index, line, problem in version_literal_marks(root)]
