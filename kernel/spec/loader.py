"""The one loader: a stack file -> validated, typed :class:`EnvironmentSpec`.

Entry points only: reading a stack file once (:func:`read_stack_document`:
text, node tree and data from one parse), refusing duplicate keys, and
:func:`parse_spec` - the model (:mod:`kernel.spec.model`: shape, types,
unknown keys, ranges), then the rules across keys (:mod:`kernel.spec.references`),
both before any resource is registered.

Every problem is reported with the stack file and the key path
(``Pulumi.prod.yaml: tradepulse-vault:spec.services[0].policies[1]: ...``, and
the line when read from a file), all problems at once, so a reviewer fixes a
bad spec in one round (:mod:`kernel.spec.messages`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from kernel import paths
from kernel.spec.marks import duplicate_keys, line_of
from kernel.spec.messages import KeyPath, Problem, SpecError, format_key_path, problems_of
from kernel.spec.model import EnvironmentSpec
from kernel.spec.references import reference_problems
from kernel.spec.stackfile import YamlDocument, collector_paused, parse_yaml
from kernel.spec.versions import version_literal_marks

__all__ = ["KeyPath", "Problem", "SpecError", "format_key_path", "load_stack_file",
           "parse_spec", "read_stack_document", "read_stack_file", "refuse_duplicate_keys"]


@collector_paused()  # a large spec is many objects kept: collections would only rescan them
def parse_spec(
    data: object, *, source: str, stack: str | None = None,
    policy_dir: Path = paths.POLICY_DIR,
) -> EnvironmentSpec:
    """Validate ``data`` (the spec value) and return the typed spec.

    ``source`` names the stack file in messages; ``stack``, when given, must
    equal the spec's ``environment``. Raises :class:`SpecError` listing every
    problem found.
    """
    try:
        spec = EnvironmentSpec.model_validate(data, context={"source": source})
    except ValidationError as exc:
        raise SpecError(source, problems_of(exc)) from None
    problems = reference_problems(spec, stack, policy_dir)
    if problems:
        raise SpecError(source, problems)
    return spec


def read_stack_document(path: Path) -> YamlDocument:
    """Read and parse a stack file once (text, nodes, data); :class:`SpecError` naming the file.

    The document's data is a mapping with a ``config:`` mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(path.name, [Problem((), "stack file does not exist")]) from None
    except IsADirectoryError:
        raise SpecError(path.name, [Problem((), "a directory, not a stack file")]) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SpecError(path.name, [Problem((), f"cannot be read ({reason})")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError(path.name, [Problem((), f"not UTF-8 text ({exc.reason} at byte "
                                            f"{exc.start})")]) from None
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(path.name, [Problem((), f"{where}{reason}")]) from None
    refuse_duplicate_keys(document, path.name)
    _config_of(document, path.name)
    return document


def refuse_duplicate_keys(document: YamlDocument, source: str) -> None:
    """Raise :class:`SpecError` for every key given twice (from the same parse).

    YAML loaders keep the last of two equal keys without a word, so a typo'd
    copy of ``version:`` or ``policies:`` would silently win or lose. Keys under
    the spec are named by their spec key path; others by their dotted place in
    the file.
    """
    problems = []
    for key_path, line, first in duplicate_keys(document.root):
        if key_path[:2] == ("config", paths.SPEC_CONFIG_KEY):
            problems.append(Problem(key_path[2:], f"duplicate key (first at line {first}); "
                                    "YAML would keep only the last", line=line))
        else:
            where = ".".join(str(part) for part in key_path)
            problems.append(Problem((), f"duplicate key `{where}` (first at line {first}); "
                                    "YAML would keep only the last", line=line))
    if problems:
        raise SpecError(source, problems)


def _config_of(document: YamlDocument, source: str) -> Mapping[str, Any]:
    doc = document.data
    if not isinstance(doc, Mapping) or not isinstance(doc.get("config"), Mapping):
        raise SpecError(source, [Problem((), "no `config:` mapping in the stack file")])
    return cast(Mapping[str, Any], doc["config"])


def read_stack_file(path: Path) -> Mapping[str, Any]:
    """Parse a stack file's YAML; raise :class:`SpecError` naming the file on bad YAML."""
    return cast(Mapping[str, Any], read_stack_document(path).data)


@collector_paused()
def load_stack_file(
    path: Path, *, policy_dir: Path = paths.POLICY_DIR, document: YamlDocument | None = None,
) -> EnvironmentSpec:
    """Load and validate the spec of the stack file at ``path`` (``Pulumi.<stack>.yaml``).

    ``document``, when the caller has already parsed the file
    (:func:`read_stack_document`), is used instead of reading it again.
    """
    if document is None:
        document = read_stack_document(path)
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    config = _config_of(document, path.name)
    if paths.SPEC_CONFIG_KEY not in config:
        raise SpecError(path.name, [Problem((), "required key is missing")])
    # A version is judged from its text first: ``10.0`` or ``010`` is a wrong spelling of a
    # version (kernel.spec.versions), which the model would only call a wrong type, or take.
    # Only numbers are judged so: a string there is the model's to describe (it may be a
    # token pasted into the wrong line, and a literal problem quotes the literal).
    secrets = config[paths.SPEC_CONFIG_KEY].get("static_secrets") \
        if isinstance(config[paths.SPEC_CONFIG_KEY], Mapping) else None
    literals = [Problem(("static_secrets", index, "version"), problem, line=line)
                for index, line, problem in version_literal_marks(document.root)
                if _is_number(secrets, index)]
    try:
        spec = parse_spec(config[paths.SPEC_CONFIG_KEY], source=path.name, stack=stack,
                          policy_dir=policy_dir)
    except SpecError as exc:
        said = {p.path for p in literals}
        others = [p for p in with_lines(exc, document.root).problems if p.path not in said]
        raise SpecError(path.name, [*literals, *others]) from None
    if literals:
        raise SpecError(path.name, literals)
    return spec


def _is_number(secrets: object, index: int) -> bool:
    """Whether ``secrets[index]["version"]`` was read as a number (not a string or a bool)."""
    if not isinstance(secrets, list) or index >= len(secrets) or not isinstance(
            secrets[index], Mapping):
        return False
    value = secrets[index].get("version")
    return isinstance(value, int | float) and not isinstance(value, bool)


def with_lines(exc: SpecError, root: yaml.Node | None) -> SpecError:
    """Return ``exc`` with each problem's line, found in the file's node tree (same parse)."""
    return SpecError(exc.source, [
        replace(p, line=line_of(root, ("config", paths.SPEC_CONFIG_KEY, *p.path)))
        for p in exc.problems])
