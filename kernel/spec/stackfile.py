"""A stack file read once: its text, its YAML node tree (with line marks) and its data.

PyYAML's stock safe loader does it in one parse: ``get_single_node()``
composes the node tree (what an edit needs to find a value's line and column)
and ``construct_document()`` builds the data from that same tree (what the
spec loader and the plan need). ``CSafeLoader`` (libyaml) is used when PyYAML
was built with it, ``SafeLoader`` otherwise, as pre-commit's ``yaml.py`` does.
Callers that need both never parse twice; callers that only need data pay the
same as ``yaml.safe_load``.

The cyclic garbage collector is paused while one text is parsed: a parse
allocates a node and two marks per value and nothing it builds is garbage, yet
each allocation burst triggers collections that walk the whole heap, and they
grow with every tree a command already holds (about half of a large file's
parse; ``docs/benchmarks.md``). Reference counting still frees as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class YamlDocument:
    """One parse of one YAML text: the text, the node tree and the constructed data."""

    text: str
    root: yaml.Node | None  # None for an empty document
    data: Any


def parse_yaml(text: str) -> YamlDocument:
    """Parse ``text`` once; raise ``yaml.YAMLError`` (with its marks) when it is not YAML.

    More than one document is an error, as for ``yaml.safe_load``.
    """
    with collector_paused():
        loader = LOADER(text)
        try:
            root = loader.get_single_node()
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    return YamlDocument(text, root, data)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block; restore it as it was (it may be off already).

    For work that builds many objects and keeps them (a parse, a plan over two
    large trees); cyclic garbage made meanwhile is collected after the block.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def read_yaml(path: Path) -> YamlDocument:
    """Read ``path`` as UTF-8 and parse it once.

    ``OSError``, ``UnicodeDecodeError`` and ``yaml.YAMLError`` are the caller's to report.
    """
    return parse_yaml(path.read_text(encoding="utf-8"))
