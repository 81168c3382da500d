"""One parse of a stack file: the same data as ``yaml.safe_load``, the collector restored."""

from __future__ import annotations

import gc

import pytest
import yaml

from kernel import paths
from kernel.spec.stackfile import collector_paused, parse_yaml
from tests.conftest import STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_the_parse_gives_safe_loads_data_and_the_node_tree(stack: str) -> None:
    text = paths.stack_file(stack).read_text(encoding="utf-8")
    document = parse_yaml(text)
    assert document.data == yaml.safe_load(text)
    assert isinstance(document.root, yaml.MappingNode)
    assert gc.isenabled()  # the parse paused the collector and gave it back


def test_the_collector_is_restored_as_it_was_even_on_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(yaml.YAMLError), collector_paused():
        assert not gc.isenabled()
        parse_yaml("a: [unclosed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: left off
    finally:
        gc.enable()
