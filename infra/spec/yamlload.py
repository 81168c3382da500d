"""Fast ``yaml.safe_load`` for stack files: libyaml's event stream turned straight into objects.

PyYAML's safe loader, even with libyaml (``CSafeLoader``), builds a node tree
(one Python node with two marks per scalar, a Python resolver call per node)
and then a second pass of Python constructors: ~2 s for a 5,000-secret stack
file, of which libyaml's own parsing is under a tenth. Stack files use a
small part of YAML: block and flow mappings and sequences of plain and quoted
scalars. For those, :func:`safe_load_yaml` builds dicts, lists and scalars
directly from the parser's events, resolving each distinct plain scalar once
with PyYAML's own resolver and safe constructors (same YAML 1.1 rules: ``yes``
is ``True``, ``0x1f`` is 31, ``~`` is ``None``).

Anything else (anchors and aliases, explicit tags, ``<<`` merge keys,
collections as keys, more than one document, a scalar that resolves to a
type other than str/int/float/bool/null/timestamp) is handed to
``yaml.load`` with the safe loader, which then parses the text as before. The
result is equal to ``yaml.load(text, Loader=CSafeLoader)`` for every input,
and bad YAML raises the same ``yaml.YAMLError`` with the same marks (the
events come from the same parser); ``tests/infra/test_yamlload.py`` checks
both, differentially and with generated documents.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

SAFE_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STR_TAG = "tag:yaml.org,2002:str"
# Plain scalars the safe constructor builds into these types are taken; others are unusual.
CONSTRUCTED_TAGS = frozenset({
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp",
})
_PLAIN = (True, False)  # a plain scalar's ``implicit``: resolved from its text
_NO_KEY = object()


class UnusualYaml(Exception):
    """The document needs the full safe loader (see the module docstring)."""


class PlainScalars:
    """Each distinct plain scalar resolved and constructed once, as PyYAML's safe loader would.

    Shared by the event walkers here and in :mod:`rotation.gates.secret_yaml`.
    """

    def __init__(self) -> None:
        self._resolver = yaml.resolver.Resolver()
        self._constructor = yaml.constructor.SafeConstructor()
        self._seen: dict[str, tuple[str, object]] = {}

    def resolve(self, text: str) -> tuple[str, object]:
        """Return ``(tag, value)`` of plain scalar ``text``.

        Raises :class:`UnusualYaml` for a tag outside str and
        :data:`CONSTRUCTED_TAGS` (a merge key, ``=``) or a value the safe
        constructor refuses (``2026-13-45``: PyYAML reports it after parsing it all).
        """
        try:
            return self._seen[text]
        except KeyError:
            pass
        tag = self._resolver.resolve(ScalarNode, text, _PLAIN)  # type: ignore[no-untyped-call]
        if tag == STR_TAG:
            value: object = text
        elif tag in CONSTRUCTED_TAGS:
            try:
                value = self._constructor.construct_object(ScalarNode(tag, text))
            except Exception as exc:
                raise UnusualYaml(tag) from exc
        else:
            raise UnusualYaml(tag)
        self._seen[text] = (tag, value)
        return tag, value

    def value(self, text: str) -> object:
        """Return the Python value of plain scalar ``text`` (see :meth:`resolve`)."""
        return self.resolve(text)[1]


def _from_events(text: str) -> Any:  # noqa: PLR0912 - one flat event loop, on purpose
    """Build the document from parser events; raise :class:`UnusualYaml` to defer to PyYAML."""
    plain = PlainScalars()
    stack: list[tuple[Any, Any]] = []  # (enclosing container, its pending key)
    current: Any = None  # the open container, None at the top level
    key: Any = _NO_KEY
    document: Any = None
    documents = 0
    parser = SAFE_LOADER(text)
    next_event = parser.get_event  # what yaml.parse() iterates, without its generator
    try:
        while True:
            event: Any = next_event()
            kind = event.__class__
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise UnusualYaml("anchor or tag")
                value = plain.value(event.value) if event.implicit[0] else event.value
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None:
                    raise UnusualYaml("anchor or tag")
                if current.__class__ is dict and key is _NO_KEY:
                    raise UnusualYaml("a collection as a mapping key")
                stack.append((current, key))
                current, key = ({} if kind is MappingStartEvent else []), _NO_KEY
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value = current
                current, key = stack.pop()
            elif kind is AliasEvent:
                raise UnusualYaml("alias")
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise UnusualYaml("more than one document")
                continue
            elif kind is StreamEndEvent:
                return document
            else:  # stream start, document end
                continue
            if current is None:
                document = value
            elif current.__class__ is list:
                current.append(value)
            elif key is _NO_KEY:
                key = value
            else:
                current[key] = value  # a repeated key keeps its last value, as PyYAML does
                key = _NO_KEY
    finally:
        parser.dispose()


def safe_load_yaml(text: str) -> Any:
    """Return ``yaml.load(text, Loader=CSafeLoader)``, built from libyaml's events when it can be.

    Raises the same ``yaml.YAMLError`` as PyYAML for malformed YAML.
    """
    try:
        return _from_events(text)
    except UnusualYaml:
        return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - the safe loader (C or Python)
