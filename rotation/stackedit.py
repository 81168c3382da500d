"""Round-trip edits of ``Pulumi.<stack>.yaml`` that change one value and nothing else.

ruamel.yaml's round-trip loader finds the exact line and column of the value
to change; the edit is then made on the original text, so comments, order,
quoting and formatting of every other byte stay as they were. The result is
re-parsed and compared with the original to prove that only the intended
value changed, validated as a spec, and written atomically.
"""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from infra import paths
from infra.spec import SpecError, parse_spec
from rotation.atomic import write_text_atomic
from rotation.errors import BadInput

_INT_TOKEN = re.compile(r"\d+")
_COMMENT_SAFE = re.compile(r"[^\w .,:;()/@+=-]")


def _roundtrip_load(text: str, source: str) -> Any:
    try:
        return YAML(typ="rt").load(io.StringIO(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{source}: not valid YAML{where}; nothing changed") from None


def _secret_node(doc: Any, secret_id: str, source: str) -> tuple[Any, int]:
    try:
        secrets = doc["config"][paths.SPEC_CONFIG_KEY]["static_secrets"]
    except (KeyError, TypeError):
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}") from None
    for index, node in enumerate(secrets):
        if f"{node.get('mount')}/{node.get('path')}" == secret_id:
            return node, index
    known = ", ".join(f"{n.get('mount')}/{n.get('path')}" for n in secrets)
    raise BadInput(f"{source}: unknown secret {secret_id!r} (declared: {known})")


def clean_reason(reason: str) -> str:
    """Return ``reason`` as a safe one-line YAML comment body (at most 120 characters)."""
    flat = " ".join(reason.split())
    return _COMMENT_SAFE.sub("", flat)[:120]


def bump_version_text(
    text: str, secret_id: str, source: str, *, reason: str | None = None
) -> tuple[str, int, int]:
    """Return ``(new_text, old_version, new_version)`` with the secret's version raised by one.

    Only the digits of the version value change, plus the comment at the end
    of that line when ``reason`` is given. Raises :class:`BadInput` for an
    unknown secret, a mirror (versions follow prod), or anything else changing.
    """
    doc = _roundtrip_load(text, source)
    node, index = _secret_node(doc, secret_id, source)
    if "mirror_of" in node:
        raise BadInput(
            f"{source}: {secret_id} is mirror_of {node['mirror_of']}: its version follows "
            f"Pulumi.{node['mirror_of']}.yaml; bump it there",
        )
    if "version" not in node or not isinstance(node["version"], int):
        raise BadInput(f"{source}: static_secrets[{index}].version is missing or not an integer")
    old = int(node["version"])
    line_no, col = node.lc.value("version")
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    match = _INT_TOKEN.match(line, col)
    if match is None or int(match.group()) != old:
        raise BadInput(f"{source}: line {line_no + 1}: version is not a plain integer literal")
    new = old + 1
    head, tail = line[: match.start()], line[match.end():]
    if reason:
        ending = "\n" if tail.endswith("\n") else ""
        tail = f" # {clean_reason(reason)}{ending}"
    lines[line_no] = f"{head}{new}{tail}"
    new_text = "".join(lines)
    _prove_only_version_changed(text, new_text, index, new, source)
    return new_text, old, new


def _prove_only_version_changed(
    old_text: str, new_text: str, index: int, new_version: int, source: str
) -> None:
    before = yaml.safe_load(old_text)
    after = yaml.safe_load(new_text)
    expected = copy.deepcopy(before)
    expected["config"][paths.SPEC_CONFIG_KEY]["static_secrets"][index]["version"] = new_version
    if after != expected:
        raise BadInput(f"{source}: the edit would change more than the version; nothing written")


def validate_text(text: str, source: str, stack: str, policy_dir: Path) -> None:
    """Validate a stack file's text as a spec; :class:`BadInput` naming the problems."""
    try:
        data = yaml.safe_load(text)
        parse_spec(data["config"][paths.SPEC_CONFIG_KEY], source=source, stack=stack,
                   policy_dir=policy_dir)
    except SpecError as exc:
        raise BadInput(str(exc)) from None
    except (yaml.YAMLError, KeyError, TypeError):
        raise BadInput(f"{source}: not a valid stack file") from None


def write_stack_text(path: Path, text: str) -> None:
    """Replace the stack file atomically, keeping its permissions."""
    mode = path.stat().st_mode & 0o777
    write_text_atomic(path, text, mode=mode)
