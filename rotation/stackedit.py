"""Round-trip edits of ``Pulumi.<stack>.yaml`` that change one value and nothing else.

The YAML node tree (libyaml's composer, with line and column marks) finds the
exact line and column of the value to change; the edit is then made on the
original text, so comments, order, quoting and formatting of every other byte
stay as they were. The result is
re-parsed and compared with the original to prove that only the intended
value changed, validated as a spec, and written atomically.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import yaml

from infra import paths
from infra.spec import SpecError, parse_spec
from infra.spec.credentials import Credential
from infra.spec.marks import duplicate_keys
from infra.spec.yamlload import safe_load_yaml
from rotation.atomic import write_text_atomic
from rotation.errors import BadInput

_INT_TOKEN = re.compile(r"\d+")
_COMMENT_SAFE = re.compile(r"[^\w .,:;()/@+=-]")


_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INT_TAG = "tag:yaml.org,2002:int"


def _compose(text: str, source: str) -> yaml.Node:
    """Return the YAML node tree (with line/column marks); :class:`BadInput` if not YAML.

    The node tree is all an edit needs: where the version literal sits. It comes
    from libyaml in milliseconds where a ruamel round-trip load of a large stack
    file took seconds. Duplicate keys are refused, as the round-trip loader did.
    """
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{source}: not valid YAML{where}; nothing changed") from None
    duplicates = duplicate_keys(root)
    if duplicates:
        key, line, first = duplicates[0]
        raise BadInput(f"{source}: line {line}: duplicate key {key!r} (first at line {first}); "
                       "nothing changed")
    if root is None:
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}")
    return root


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """Return the value node of ``key`` in a mapping node (None if absent or not a mapping)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return cast(yaml.Node, v)
    return None


def _scalar(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _secret_node(root: yaml.Node, secret_id: str, source: str) -> tuple[yaml.MappingNode, int]:
    secrets = _get(_get(_get(root, "config"), paths.SPEC_CONFIG_KEY), "static_secrets")
    if not isinstance(secrets, yaml.SequenceNode):
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}")
    items = [n for n in secrets.value if isinstance(n, yaml.MappingNode)]
    for index, node in enumerate(secrets.value):
        if (isinstance(node, yaml.MappingNode)
                and f"{_scalar(_get(node, 'mount'))}/{_scalar(_get(node, 'path'))}" == secret_id):
            return node, index
    known = ", ".join(f"{_scalar(_get(n, 'mount'))}/{_scalar(_get(n, 'path'))}" for n in items)
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
    root = _compose(text, source)
    node, index = _secret_node(root, secret_id, source)
    mirror = _get(node, "mirror_of")
    if mirror is not None:
        raise BadInput(
            f"{source}: {secret_id} is mirror_of {_scalar(mirror)}: its version follows "
            f"Pulumi.{_scalar(mirror)}.yaml; bump it there",
        )
    version = _get(node, "version")
    if not isinstance(version, yaml.ScalarNode) or version.tag != _INT_TAG:
        raise BadInput(f"{source}: static_secrets[{index}].version is missing or not an integer")
    line_no, col = version.start_mark.line, version.start_mark.column
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    match = _INT_TOKEN.match(line, col)
    if match is None or match.group() != version.value:
        raise BadInput(f"{source}: line {line_no + 1}: version is not a plain integer literal")
    old = int(match.group())
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
    expected = safe_load_yaml(old_text)  # a fresh parse, edited in place: no copy needed
    after = safe_load_yaml(new_text)
    node = expected["config"][paths.SPEC_CONFIG_KEY]["static_secrets"][index]
    # The loader (PyYAML, YAML 1.1) must read the old version as new - 1 too: a literal
    # like 010 is 10 to ruamel but 8 to PyYAML, and bumping it would jump by three.
    if node.get("version") != new_version - 1 or isinstance(node.get("version"), bool):
        raise BadInput(f"{source}: static_secrets[{index}].version is not a plain decimal "
                       "integer; write it as one (e.g. 10, not 010)")
    node["version"] = new_version
    if after != expected:
        raise BadInput(f"{source}: the edit would change more than the version; nothing written")


def validate_text(text: str, source: str, stack: str, policy_dir: Path) -> None:
    """Validate a stack file's text as a spec; :class:`BadInput` naming the problems."""
    try:
        data = safe_load_yaml(text)
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


def _node_at(root: yaml.Node, where: tuple[str | int, ...]) -> yaml.Node | None:
    node: yaml.Node | None = _get(_get(root, "config"), paths.SPEC_CONFIG_KEY)
    for step in where:
        if isinstance(step, int):
            items = node.value if isinstance(node, yaml.SequenceNode) else []
            node = items[step] if step < len(items) else None
        else:
            node = _get(node, step)
    return node


def _key_path(where: tuple[str | int, ...], field: str) -> str:
    out = ""
    for step in (*where, field):
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def bump_credential_text(
    text: str, credential: Credential, source: str, *, reason: str | None = None
) -> tuple[str, int, int]:
    """Return ``(new_text, old, new)`` with a non-KV credential's version field raised by one.

    The same byte-exact edit as :func:`bump_version_text`: only the digits of
    ``credential.field`` (and, with ``reason``, the comment on that line)
    change, and a re-parse proves nothing else did. The field must be written
    in the file (the loader's default of 1 has no line to edit).
    """
    root = _compose(text, source)
    where = _key_path(credential.where, credential.field)
    mapping = _node_at(root, credential.where)
    version = _get(mapping, credential.field)
    if not isinstance(version, yaml.ScalarNode) or version.tag != _INT_TAG:
        raise BadInput(f"{source}: {paths.SPEC_CONFIG_KEY}.{where} is missing or not an "
                       f"integer; declare it (`{credential.field}: {credential.version}`) in a "
                       "reviewed change first, then bump")
    line_no, col = version.start_mark.line, version.start_mark.column
    lines = text.splitlines(keepends=True)
    match = _INT_TOKEN.match(lines[line_no], col)
    if match is None or match.group() != version.value:
        raise BadInput(f"{source}: line {line_no + 1}: {where} is not a plain integer literal")
    old = int(match.group())
    new = old + 1
    head, tail = lines[line_no][: match.start()], lines[line_no][match.end():]
    if reason:
        tail = f" # {clean_reason(reason)}" + ("\n" if tail.endswith("\n") else "")
    lines[line_no] = f"{head}{new}{tail}"
    new_text = "".join(lines)
    expected = safe_load_yaml(text)
    node: Any = expected["config"][paths.SPEC_CONFIG_KEY]
    for step in credential.where:
        node = node[step]
    if node.get(credential.field) != old or isinstance(node.get(credential.field), bool):
        raise BadInput(f"{source}: {where} is not a plain decimal integer; write it as one")
    node[credential.field] = new
    if safe_load_yaml(new_text) != expected:
        raise BadInput(f"{source}: the edit would change more than {where}; nothing written")
    return new_text, old, new
