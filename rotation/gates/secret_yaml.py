"""detect-secrets' YAML transformer, computed from libyaml's events for plain block YAML.

detect-secrets reads a YAML file through its ``YAMLTransformer``: one line
``key: "value"`` per string value of a mapping, placed at the line number its
``YAMLFileParser`` records for the value. That parser runs PyYAML's
pure-Python scanner with shims on the composer (the line is the scanner's
position when the value's node starts) and builds the whole document twice:
about 12 s for a 1000-service ``Pulumi.prod.yaml`` (77,000 lines), the
largest single cost of the gate.

For block-style YAML the recorded line is always the line of the pair's
``:`` indicator, which is the line of its (single-line, implicit) key: when
the composer starts the value, the scanner has read exactly up to that ``:``.
:func:`transformed_lines` rebuilds the transformer's lines from libyaml's
event stream (a fraction of a second) for documents that only use what stack
files use: one document of block mappings and sequences, implicit keys that
are single-line strings, scalars of the safe types; no anchors, aliases,
tags, directives, tabs or unusual line breaks, and every flow mapping on
one line. Anything
else returns ``None`` and detect-secrets' own transformer runs as before.
:func:`fast_yaml_transformer` plugs this into detect-secrets' scanner for the
duration of a scan, so every other step (filters, plugins, the eager pass) is
detect-secrets' own. ``tests/rotation/test_secret_yaml.py`` checks the lines
against detect-secrets' transformer, on the repository's YAML files and on
generated documents.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import yaml
from detect_secrets.transformers import get_transformers
from detect_secrets.transformers.yaml import YAMLTransformer, YAMLValue, _yaml_comment_regex
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from infra.spec.yamlload import STR_TAG as _STR
from infra.spec.yamlload import PlainScalars, UnusualYaml

# Characters on which the two parsers, or str.splitlines() and YAML's line count, may
# disagree: tabs (PyYAML's scanner refuses some that libyaml accepts), line breaks other
# than \n, a byte-order mark. "__line__" is the transformer's own marker key.
_UNUSUAL = re.compile("[\t\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\ufeff]|__line__")
_KEY_END = re.compile(r"[ \t]*:")
_MAX_KEY = 1000  # PyYAML and libyaml give up on implicit keys longer than 1024 characters


class _Unusual(UnusualYaml):
    """The document is outside the subset handled here: let detect-secrets parse it."""


class _Scalars:
    """The tag PyYAML's safe loader gives each scalar event (plain ones resolved once)."""

    def __init__(self) -> None:
        self._plain = PlainScalars()

    def tag(self, event: Any) -> str:
        """Return the tag of ``event``; raise UnusualYaml if the safe loader cannot load it."""
        if not event.implicit[0]:
            return _STR  # quoted: always a string
        return self._plain.resolve(event.value)[0]


class _Frame:
    """One open collection of the event walk."""

    __slots__ = ("children", "flow", "keys", "line", "mapping", "path", "pending")

    def __init__(self, mapping: bool, flow: bool, line: int, path: tuple[int, ...]) -> None:
        self.mapping = mapping
        self.flow = flow
        self.line = line  # where a flow mapping starts (it must end on the same line)
        self.path = path  # child indexes from the document's root
        self.children = 0  # values (of a mapping) or items (of a sequence) so far
        self.keys: set[str] = set()
        self.pending: Any = None  # a mapping's key (its ScalarEvent) waiting for its value


class _Walk:
    """The transformer's values, collected from one document's events.

    A string value's line is its key's line: in block context the composer
    starts the value right after the scanner read the pair's ``:``, which
    follows a one-line implicit key on its line; in a flow mapping the shim
    takes the line of the innermost open ``{`` instead (the scanner may have
    read past the mapping by then), so a flow mapping must be on one line,
    written with braces (not a single pair inside ``[...]``).

    Values on one line (a flow mapping, or several nested in one) keep the
    order of the transformer's breadth-first walk of the document: by depth,
    then by their index path from the root (see :meth:`ordered`).
    """

    def __init__(self, content: str) -> None:
        self.content = content
        self.lines = content.splitlines()
        self.scalars = _Scalars()
        self.items: list[tuple[int, int, tuple[int, ...], YAMLValue]] = []
        self.frames: list[_Frame] = []
        self.documents = 0

    def scalar(self, event: Any) -> None:
        """Take a key (checked, kept) or its value (a transformer line when a string)."""
        if event.anchor is not None or event.tag is not None:
            raise _Unusual("anchor or tag")
        tag = self.scalars.tag(event)
        if not self.frames:
            raise _Unusual("the document is a scalar")
        frame = self.frames[-1]
        if not frame.mapping:
            frame.children += 1
            return  # a sequence item: never a transformer line
        key = frame.pending
        if key is not None:  # the value of ``key``
            frame.pending = None
            if tag == _STR:
                number = key.start_mark.line + 1
                path = (*frame.path, frame.children)
                self.items.append((number, len(path), path, YAMLValue(
                    key=key.value, value=event.value, line_number=number,
                    line=self.lines[number - 1])))
            frame.children += 1
            return
        start, end = event.start_mark, event.end_mark
        if (tag != _STR or start.line != end.line or event.value in frame.keys
                or end.index - start.index > _MAX_KEY
                or not _KEY_END.match(self.content, end.index)):
            raise _Unusual("not a one-line implicit string key, or a repeated key")
        frame.keys.add(event.value)
        frame.pending = event

    def start(self, event: Any) -> None:
        """Open a collection: a value or an item, never a key."""
        if event.anchor is not None or event.tag is not None:
            raise _Unusual("anchor or tag")
        path: tuple[int, ...] = ()
        if self.frames:
            frame = self.frames[-1]
            if frame.mapping:
                if frame.pending is None:
                    raise _Unusual("a collection as a key")
                frame.pending = None
            path = (*frame.path, frame.children)
            frame.children += 1
        mapping, flow = isinstance(event, MappingStartEvent), bool(event.flow_style)
        if mapping and flow and not self.content.startswith("{", event.start_mark.index):
            raise _Unusual("a single-pair mapping in a flow sequence")
        self.frames.append(_Frame(mapping, flow, event.start_mark.line, path))

    def end(self, event: Any) -> None:
        """Close a collection (a flow mapping must close on its first line)."""
        frame = self.frames.pop()
        if frame.flow and frame.mapping and event.end_mark.line != frame.line:
            raise _Unusual("a flow mapping on more than one line")

    def document(self, event: Any) -> None:
        """Start a document: only one, without directives."""
        self.documents += 1
        if self.documents > 1 or event.version or event.tags:
            raise _Unusual("directives or more than one document")

    def ordered(self) -> list[YAMLValue]:
        """Return the values as the transformer sorts them: by line, ties in its walk's order."""
        return [item for *_, item in sorted(self.items, key=lambda i: i[:3])]


def _items(content: str) -> list[YAMLValue]:
    """Return the values ``YAMLFileParser`` yields for ``content``; raise _Unusual otherwise."""
    if yaml.SafeLoader.yaml_path_resolvers or not hasattr(yaml, "CSafeLoader"):
        raise _Unusual("path resolvers or no libyaml")
    if _UNUSUAL.search(content) or yaml.reader.Reader.NON_PRINTABLE.search(content):
        raise _Unusual("unusual characters")
    try:
        # Events as Any: their marks are never None here, which the stubs cannot know.
        events: list[Any] = list(yaml.parse(content, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        raise _Unusual("libyaml cannot parse it") from exc
    walk = _Walk(content)
    for event in events:
        kind = event.__class__
        if kind is ScalarEvent:
            walk.scalar(event)
        elif kind is MappingStartEvent or kind is SequenceStartEvent:
            walk.start(event)
        elif kind is MappingEndEvent or kind is SequenceEndEvent:
            walk.end(event)
        elif kind is AliasEvent:
            raise _Unusual("alias")
        elif kind is DocumentStartEvent:
            walk.document(event)
    return walk.ordered()


def transformed_lines(content: str) -> list[str] | None:
    """Return ``YAMLTransformer().parse_file`` of a file reading ``content``, or None.

    None means the document is outside the handled subset (see the module
    docstring): run detect-secrets' transformer instead. The assembly below is
    the transformer's own (detect-secrets 1.5): drop repeats, pad with empty
    lines, and write ``key: "value"`` plus the line's comment.
    """
    try:
        items = _items(content)
    except UnusualYaml:  # this module's _Unusual, or a scalar PlainScalars refuses
        return None
    seen: set[YAMLValue] = set()
    lines: list[str] = []
    for item in items:
        if item in seen:
            continue
        seen.add(item)
        while len(lines) < item.line_number - 1:
            lines.append("")
        value = item.value
        if isinstance(value, bytes):  # pragma: no cover - binary needs a tag: never here
            value = base64.b64encode(value).decode()
        match = _yaml_comment_regex().search(item.line.strip())
        comment = match.group(0) if match else ""
        value = value.replace('"', '\\"')
        lines.append(f'{item.key}: "{value}"{comment}')
    return lines


@contextlib.contextmanager
def fast_yaml_transformer() -> Iterator[None]:
    """Within this block detect-secrets' YAML transformer uses :func:`transformed_lines` first.

    Only the transformer instance detect-secrets caches
    (``get_transformers()``) is changed, and only for the block; a document
    outside the handled subset goes to the transformer's own ``parse_file``.
    """
    cached: Iterable[Any] = get_transformers()  # the instances its scanner uses
    transformers: list[Any] = [t for t in cached if isinstance(t, YAMLTransformer)]
    for transformer in transformers:
        transformer.parse_file = _fast_parse_file(transformer)
    try:
        yield
    finally:
        for transformer in transformers:
            del transformer.parse_file  # back to the class's method


def _fast_parse_file(transformer: YAMLTransformer) -> Callable[[Any], list[str]]:
    """Return a ``parse_file`` for ``transformer``: :func:`transformed_lines`, else its own."""
    original = functools.partial(YAMLTransformer.parse_file, transformer)

    def parse_file(file: Any) -> list[str]:
        lines = transformed_lines(file.read())
        if lines is not None:
            return lines
        file.seek(0)
        return original(file)

    return parse_file
