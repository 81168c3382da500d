"""``infra.spec.yamlload.safe_load_yaml`` is ``yaml.load`` with the safe loader, only faster.

Differential: every input here is also loaded by PyYAML's own safe loader
(libyaml's when present) and the results, or the errors, must be the same.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infra import paths
from infra.spec import yamlload
from infra.spec.yamlload import SAFE_LOADER, safe_load_yaml


def reference(text: str) -> Any:
    """What PyYAML's safe loader returns."""
    return yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - the safe loader


def same(a: Any, b: Any) -> bool:
    """Equal, with types compared too (``True`` is not ``1``) and NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def assert_same_as_pyyaml(text: str) -> Any:
    """Load ``text`` both ways; the results or the error messages must match."""
    try:
        expected = reference(text)
    except (yaml.YAMLError, ValueError) as exc:
        with pytest.raises(type(exc)) as got:
            safe_load_yaml(text)
        assert str(got.value) == str(exc)
        return None
    actual = safe_load_yaml(text)
    assert same(actual, expected), (text, actual, expected)
    return actual


@pytest.mark.parametrize("stack_file", sorted(paths.REPO_ROOT.glob("Pulumi*.yaml")),
                         ids=lambda p: p.name)
def test_the_repository_stack_files_load_identically(stack_file: Path) -> None:
    doc = assert_same_as_pyyaml(stack_file.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)


SCALARS = [
    "a: yes", "a: No", "a: on", "a: OFF", "a: ~", "a: null", "a:", "a: ''", 'a: "1"',
    "a: 010", "a: 0o10", "a: 0x1f", "a: 0b101", "a: 1_000", "a: -7", "a: +7", "a: 190:20:30",
    "a: 1.5", "a: 1e3", "a: .inf", "a: -.Inf", "a: .nan", "a: 6.8523015e+5",
    "a: 2026-11-27", "a: 2026-11-27T08:52:53Z", "a: 2001-12-14 21:59:43.10 -5",
    "a: 'quoted: yes'", 'a: "esc\\taped\\u00e9"', "a: |\n  block\n  text\n",
    "a: >\n  folded\n  x\n",
    "a: plain text with spaces", "a: [1, two, 'three', {b: c}]", "a: {x: 1, y: [true, ~]}",
    "? complex\n: key", "1: int key", "true: bool key", "~: null key", "1.5: float key",
    "a: 1\na: 2", "- a\n- b\n-\n- - nested\n", "", "# only a comment\n", "just a scalar",
    "---\na: 1\n...\n", "%YAML 1.1\n---\na: 1\n",
]

DEFERRED = [  # handed to PyYAML's loader: the result must still be identical
    "base: &b {x: 1}\nref: *b", "a: &x 1\nb: *x", "base: &b {x: 1}\nd:\n  <<: *b\n  y: 2",
    "a: !!str 1", "a: !!int '7'", "a: !!binary aGVsbG8=", "a: !!set {x, y}",
    "a: !!omap [x: 1]", "? [a, b]\n: value", "? {a: b}\n: value", "a: =",
]

BAD = [
    "a: [1, 2", "a: b: c", "a:\n- b\n c", "\t- tab", "a: 'unterminated", "--- a\n--- b\n",
    "a: !custom 1", "a: *undefined", "{a: 1}}", "a: @reserved",
    "a: 2026-13-45", "a: 2026-13-45\nb: [",  # a bad date, then bad syntax: syntax wins
]


@pytest.mark.parametrize("text", SCALARS + DEFERRED + BAD)
def test_each_case_matches_pyyaml(text: str) -> None:
    assert_same_as_pyyaml(text)


def test_the_fast_path_is_taken_for_plain_stack_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed comes from not calling yaml.load: prove stack-file-shaped YAML avoids it."""
    def refuse(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("yaml.load was called")

    monkeypatch.setattr(yamlload.yaml, "load", refuse)
    text = (paths.REPO_ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8")
    assert safe_load_yaml(text)["config"][paths.SPEC_CONFIG_KEY]["environment"] == "prod"
    for case in SCALARS:
        safe_load_yaml(case)


@pytest.mark.parametrize("text", DEFERRED)
def test_unusual_documents_are_deferred_to_pyyaml(text: str, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    calls: list[str] = []
    real = yaml.load

    def spy(stream: str, Loader: Any) -> Any:
        calls.append(stream)
        return real(stream, Loader=Loader)

    monkeypatch.setattr(yamlload.yaml, "load", spy)
    with contextlib.suppress(yaml.YAMLError):  # an unhashable key is PyYAML's error too
        safe_load_yaml(text)
    assert calls == [text]


def test_timestamps_and_repeated_keys_follow_pyyaml() -> None:
    doc = assert_same_as_pyyaml("t: 2026-11-27\nk: 1\nk: 2\n")
    assert doc == {"t": datetime.date(2026, 11, 27), "k": 2}


# --- generated documents ---------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False), _text,
    st.sampled_from(["yes", "no", "on", "off", "~", "null", "010", "0x1f", "1_0", ".inf",
                     "2026-11-27", "1e3", "<<", "=", "-", "", " ", "#", "a: b", "- x"]),
)
_docs = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(_text, st.integers(), st.booleans()),
                                            inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(doc=_docs, flow=st.sampled_from([None, True, False]), width=st.sampled_from([20, 80]))
def test_generated_documents_match_pyyaml(doc: Any, flow: bool | None, width: int) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, width=width, allow_unicode=True)
    assert_same_as_pyyaml(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from(list("ab:- \n'\"[]{},#&*!|>?%@`~01.x\t")), max_size=40))
def test_arbitrary_text_matches_pyyaml(text: str) -> None:
    assert_same_as_pyyaml(text)
