"""Round-trip edits of ``Pulumi.<stack>.yaml`` that change one value and nothing else.

The file is parsed once (:mod:`kernel.spec.stackfile`: the node tree with line
and column marks, and the data from the same parse). The node tree finds the
exact line and column of the value to change; the edit is then made on the
original text, so comments, order, quoting and formatting of every other byte
stay as they were. The new text is parsed once and its data compared with the
original's to prove that only the intended value changed; that same parse is
validated as a spec before the file is written atomically.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from kernel import paths
from kernel.atomic import write_text_atomic
from kernel.redact import describe
from kernel.spec import SpecError, parse_spec
from kernel.spec.credentials import Credential
from kernel.spec.loader import refuse_duplicate_keys
from kernel.spec.stackfile import YamlDocument, parse_yaml
from kernel.spec.versions import literal_problem
from rotation.errors import BadInput

_INT_TOKEN = re.compile(r"\d+")
_COMMENT_SAFE = re.compile(r"[^\w .,:;()/@+=-]")
_TICKET_SAFE = re.compile(r"[^\w.:/#@+=-]")
_TICKET_TAIL = re.compile(r"\(ticket ([^()\s]+)\)\s*$")


_INT_TAG = "tag:yaml.org,2002:int"


def parse_text(text: str, source: str) -> YamlDocument:
    """Parse a stack file's text once (nodes and data); :class:`BadInput` if not YAML.

    Duplicate keys are refused (PyYAML would keep the last one silently), so
    an edit can never land on a key the loader ignores.
    """
    try:
        document = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{source}: not valid YAML{where}; nothing changed") from None
    try:
        refuse_duplicate_keys(document, source)
    except SpecError as exc:
        raise BadInput(f"{exc} (nothing changed)") from None
    return document


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


# The static secrets' nodes by id, per parsed tree: a plan reads one comment per
# rotation, and a scan of every secret each time made it rotations x secrets.
_SECRET_NODES: weakref.WeakKeyDictionary[yaml.Node, dict[str, tuple[yaml.MappingNode, int]]] = (
    weakref.WeakKeyDictionary())


def _secret_nodes(root: yaml.Node, source: str) -> dict[str, tuple[yaml.MappingNode, int]]:
    index = _SECRET_NODES.get(root)
    if index is not None:
        return index
    secrets = _get(_get(_get(root, "config"), paths.SPEC_CONFIG_KEY), "static_secrets")
    if not isinstance(secrets, yaml.SequenceNode):
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}")
    index = {}
    for position, node in enumerate(secrets.value):
        if isinstance(node, yaml.MappingNode):
            secret_id = f"{_scalar(_get(node, 'mount'))}/{_scalar(_get(node, 'path'))}"
            index.setdefault(secret_id, (node, position))  # the first, as the loader reads
    _SECRET_NODES[root] = index
    return index


def _secret_node(root: yaml.Node, secret_id: str, source: str) -> tuple[yaml.MappingNode, int]:
    found = _secret_nodes(root, source).get(secret_id)
    if found is None:
        known = ", ".join(_secret_nodes(root, source))
        raise BadInput(f"{source}: unknown secret {describe(secret_id)} (declared: {known})")
    return found


def clean_reason(reason: str) -> str:
    """Return ``reason`` as a safe one-line YAML comment body (at most 120 characters)."""
    flat = " ".join(reason.split())
    return _COMMENT_SAFE.sub("", flat)[:120]


@dataclass(frozen=True)
class Bump:
    """The result of one version bump: the new text (and its one parse), old and new version."""

    text: str
    document: YamlDocument
    old_version: int
    new_version: int


def clean_ticket(ticket: str) -> str:
    """Return ``ticket`` as an identifier (``SEC-123``, a URL): no spaces, at most 120 chars."""
    return _TICKET_SAFE.sub("", ticket.strip())[:120]


def rotation_comment(reason: str | None, ticket: str | None) -> str:
    """Return the version line's comment body for a bump: ``<reason> (ticket <ticket>)``."""
    parts = [clean_reason(reason)] if reason and clean_reason(reason) else []
    if ticket and clean_ticket(ticket):
        parts.append(f"(ticket {clean_ticket(ticket)})")
    return " ".join(parts)


def parse_rotation_comment(comment: str | None) -> tuple[str | None, str | None]:
    """Return ``(reason, ticket)`` from a comment :func:`rotation_comment` wrote."""
    if not comment:
        return None, None
    match = _TICKET_TAIL.search(comment)
    ticket = match.group(1) if match else None
    reason = (comment[: match.start()] if match else comment).strip()
    return reason or None, ticket


def version_comment(document: YamlDocument, secret_id: str, source: str) -> str | None:
    """Return the comment on ``secret_id``'s version line (None if there is none).

    ``document`` is the stack file parsed once (:func:`parse_text`): a plan asks this
    for every rotation, and re-parsing the file each time made it quadratic.
    """
    if document.root is None:
        return None
    node, _ = _secret_node(document.root, secret_id, source)
    return _comment_after(document.text, _get(node, "version"))


def credential_comment(document: YamlDocument, credential: Credential,
                       source: str) -> str | None:
    """Return the comment on a non-KV credential's version line (None if there is none)."""
    if document.root is None:
        return None
    return _comment_after(document.text,
                          _get(_node_at(document.root, credential.where), credential.field))


def _comment_after(text: str, value: yaml.Node | None) -> str | None:
    """Return the ``# comment`` after ``value`` on its line (where bump writes the reason)."""
    if value is None:
        return None
    start = value.end_mark.index  # the rest of the value's line, without splitting the text
    end = text.find("\n", start)
    stripped = text[start:end if end != -1 else len(text)].strip()
    return stripped[1:].strip() or None if stripped.startswith("#") else None


def bump_version_text(
    text: str, secret_id: str, source: str, *, reason: str | None = None,
    ticket: str | None = None,
) -> tuple[str, int, int]:
    """Return ``(new_text, old_version, new_version)``: :func:`bump_document` of ``text``."""
    bump = bump_document(parse_text(text, source), secret_id, source, reason=reason,
                         ticket=ticket)
    return bump.text, bump.old_version, bump.new_version


# Fields one lifecycle edit writes beside ``version`` and the next bump of the secret drops:
# ``restores: M`` (rollback), ``previous: N`` (keep_previous: version N's keys are kept as
# <KEY>_PREVIOUS), ``retired: N`` (retire: version N's keys without the previous value).
LIFECYCLE_FIELDS = ("restores", "previous", "retired")


def bump_document(
    document: YamlDocument, secret_id: str, source: str, *, reason: str | None = None,
    ticket: str | None = None, mark: tuple[str, int] | None = None,
) -> Bump:
    """Raise the secret's version by one in the parsed stack file ``document``.

    Only the digits of the version value change, plus the comment at the end
    of that line when ``reason`` or ``ticket`` is given (the plan and the
    record read them back from there). A lifecycle field of the previous edit
    (:data:`LIFECYCLE_FIELDS`) is removed, and ``mark`` (a field and value:
    ``restores``/``retired``), or for a ``keep_previous: true`` secret
    ``previous: <old version>``, is written on a new line after the version.
    A plain bump while a previous value is still kept is refused (it would drop
    the value a consumer may still use). Raises :class:`BadInput` for an
    unknown secret, a mirror (versions follow prod), or anything else changing.
    """
    text, root = document.text, document.root
    if root is None:
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}")
    node, index = _secret_node(root, secret_id, source)
    mirror = _get(node, "mirror_of")
    if mirror is not None:
        raise BadInput(
            f"{source}: {secret_id} is mirror_of {_scalar(mirror)}: its version follows "
            f"Pulumi.{_scalar(mirror)}.yaml; bump it there",
        )
    version = _get(node, "version")
    if version is None:
        raise BadInput(f"{source}: static_secrets[{index}].version is missing")
    problem = literal_problem(version)
    if problem is not None:  # the rule plan and the gate apply too
        raise BadInput(f"{source}: {paths.SPEC_CONFIG_KEY}.static_secrets[{index}].version "
                       f"(line {version.start_mark.line + 1}): {problem}; nothing changed")
    line_no, col = version.start_mark.line, version.start_mark.column
    lines = text.splitlines(keepends=True)
    line = lines[line_no]
    match = _INT_TOKEN.match(line, col)
    if match is None or match.group() != version.value:
        raise BadInput(f"{source}: line {line_no + 1}: version is not a plain integer literal")
    old = int(match.group())
    new = old + 1
    previous = _get(node, "previous")
    if previous is not None and mark is None:
        raise BadInput(f"{source}: {secret_id} still keeps version {_scalar(previous)}'s value "
                       "as <KEY>_PREVIOUS; a second rotation would drop the value a consumer "
                       "may still use, so nothing changed",
                       hint=f"once every consumer reads the new value: python -m rotation "
                            f"retire --stack <stack> {secret_id}")
    keep = _get(node, "keep_previous")
    if mark is None and _scalar(keep) == "true":
        mark = ("previous", old)
    head, tail = line[: match.start()], line[match.end():]
    comment = rotation_comment(reason, ticket)
    if comment:
        ending = "\n" if tail.endswith("\n") else ""
        tail = f" # {comment}{ending}"
    elif not tail.endswith("\n"):
        tail += "\n"
    lines[line_no] = f"{head}{new}{tail}"
    for name in LIFECYCLE_FIELDS:  # the bump after a lifecycle edit returns to normal
        field = _get(node, name)
        if field is not None:
            lines[field.start_mark.line] = ""
    if mark is not None:
        key = next(k for k, v in node.value if v is version)
        lines[line_no] += f"{' ' * key.start_mark.column}{mark[0]}: {mark[1]}\n"
    new_text = "".join(lines)
    after = parse_text(new_text, source)
    _prove_only_version_changed(document.data, after.data, index, new, source, mark=mark)
    return Bump(new_text, after, old, new)


def rollback_document(
    document: YamlDocument, secret_id: str, source: str, to_version: int, *,
    reason: str | None = None, ticket: str | None = None,
) -> Bump:
    """Bump the secret's version by one and declare ``restores: to_version`` beside it.

    The same byte-exact edit as :func:`bump_document` with the mark
    ``restores: M`` (a previous value still kept is dropped with it: the
    rollback writes version M's keys only). ``to_version`` must be older than
    the version it replaces (M < N); the value itself is never read here.
    """
    bumped = bump_document(document, secret_id, source, reason=reason, ticket=ticket,
                           mark=("restores", to_version))
    old = bumped.old_version
    if not 1 <= to_version < old:
        which = (f"one of versions 1 to {old - 1}, older than the current one ({old})"
                 if old > 1 else "an older version, and version 1 is the first")
        raise BadInput(f"{source}: --to-version {to_version}: a rollback restores {which}; "
                       "nothing changed")
    return bumped


def retire_document(
    document: YamlDocument, secret_id: str, source: str, *, reason: str | None = None,
    ticket: str | None = None,
) -> Bump:
    """Bump the version by one with ``retired: N``: version N's keys without the previous value."""
    root = document.root
    if root is None:
        raise BadInput(f"{source}: no static_secrets in {paths.SPEC_CONFIG_KEY}")
    node, _ = _secret_node(root, secret_id, source)
    if _get(node, "previous") is None:
        raise BadInput(f"{source}: {secret_id} keeps no previous value (no `previous:` beside "
                       "its version); nothing to retire, nothing changed")
    version = _scalar(_get(node, "version"))
    if version is None or not version.isdigit():
        raise BadInput(f"{source}: {secret_id}: version is missing or not an integer")
    return bump_document(document, secret_id, source, reason=reason, ticket=ticket,
                         mark=("retired", int(version)))


def _prove_only_version_changed(
    before: Any, after: Any, index: int, new_version: int, source: str, *,
    mark: tuple[str, int] | None = None,
) -> None:
    secrets = before["config"][paths.SPEC_CONFIG_KEY]["static_secrets"]
    node = secrets[index]
    # The loader (PyYAML, YAML 1.1) must read the old version as new - 1 too: a literal
    # like 010 is 10 to ruamel but 8 to PyYAML, and bumping it would jump by three.
    if node.get("version") != new_version - 1 or isinstance(node.get("version"), bool):
        raise BadInput(f"{source}: static_secrets[{index}].version is not a plain decimal "
                       "integer; write it as one (e.g. 10, not 010)")
    # Compare with the old data edited in place, restoring it after: no copy of the document.
    saved = dict(node)
    node["version"] = new_version
    for name in LIFECYCLE_FIELDS:  # a bump after a lifecycle edit drops it
        node.pop(name, None)
    if mark is not None:
        node[mark[0]] = mark[1]
    try:
        changed_elsewhere = after != before
    finally:
        node.clear()
        node.update(saved)
    if changed_elsewhere:
        raise BadInput(f"{source}: the edit would change more than the version; nothing written")


def validate_text(text: str, source: str, stack: str, policy_dir: Path,
                  *, document: YamlDocument | None = None) -> None:
    """Validate a stack file's text (or its parse ``document``) as a spec; :class:`BadInput`."""
    try:
        data = (document if document is not None else parse_text(text, source)).data
        parse_spec(data["config"][paths.SPEC_CONFIG_KEY], source=source, stack=stack,
                   policy_dir=policy_dir)
    except SpecError as exc:
        raise BadInput(str(exc)) from None
    except (KeyError, TypeError):
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
    text: str, credential: Credential, source: str, *, reason: str | None = None,
    ticket: str | None = None,
) -> tuple[str, int, int]:
    """Return ``(new_text, old, new)`` with a non-KV credential's version field raised by one.

    The same byte-exact edit as :func:`bump_version_text`: only the digits of
    ``credential.field`` (and, with ``reason``, the comment on that line)
    change, and a re-parse proves nothing else did. The field must be written
    in the file (the loader's default of 1 has no line to edit).
    """
    document = parse_text(text, source)
    assert document.root is not None
    root = document.root
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
    if reason or ticket:
        tail = f" # {rotation_comment(reason, ticket)}" + ("\n" if tail.endswith("\n") else "")
    lines[line_no] = f"{head}{new}{tail}"
    new_text = "".join(lines)
    expected = document.data
    node: Any = expected["config"][paths.SPEC_CONFIG_KEY]
    for step in credential.where:
        node = node[step]
    if node.get(credential.field) != old or isinstance(node.get(credential.field), bool):
        raise BadInput(f"{source}: {where} is not a plain decimal integer; write it as one")
    node[credential.field] = new
    if parse_yaml(new_text).data != expected:
        raise BadInput(f"{source}: the edit would change more than {where}; nothing written")
    return new_text, old, new
