"""Line numbers for key paths: so an error in a stack file names the file *and* the line.

The spec is validated as data (JSON Schema, cross-references), which knows key
paths (``tradepulse-vault:spec.services[0].policies[1]``) but not lines. The
YAML node tree carries start marks; walking it along a key path gives the line
of the deepest node that exists (a missing key is reported at its parent,
where it would have to be added).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml


def line_of(root: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """Return the 1-based line of ``path`` in the tree (or of its deepest existing parent)."""
    node = root
    line = None if root is None else root.start_mark.line + 1
    for part in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    child, line = value, key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def duplicate_keys(root: yaml.Node | None) -> list[tuple[tuple[str | int, ...], int, int]]:
    """Return ``(key path, line, first line)`` for every mapping key given twice in the tree.

    PyYAML keeps the last value of a repeated key without a word; a stack file
    where ``version`` appears twice would be edited on one line and loaded
    from the other. The key path ends with the repeated key, so a message can
    name the field and not only the line.
    """
    found: list[tuple[tuple[str | int, ...], int, int]] = []
    stack: list[tuple[yaml.Node, tuple[str | int, ...]]] = [] if root is None else [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                line = key.start_mark.line + 1
                if key.value in first:
                    found.append(((*path, key.value), line, first[key.value]))
                else:
                    first[key.value] = line
                stack.append((value, (*path, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.value))
    return sorted(found, key=lambda item: item[1])
