"""The gate's YAML lines for detect-secrets are its own ``YAMLTransformer``'s, only faster.

Differential: every document here is also read by detect-secrets'
transformer; :func:`transformed_lines` must return exactly its lines, or
``None`` (the scan then runs the transformer itself). The repository's stack
files and a generated fleet must take the fast path, or the gate is slow again.
"""

from __future__ import annotations

import base64
import copy
import io
import random
import secrets
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from detect_secrets.core.scan import scan_file
from detect_secrets.settings import transient_settings
from detect_secrets.transformers import get_transformers
from detect_secrets.transformers.exceptions import ParsingError
from detect_secrets.transformers.yaml import YAMLTransformer
from hypothesis import given, settings
from hypothesis import strategies as st

from rotation.gates import secret_scan
from rotation.gates.secret_yaml import fast_yaml_transformer, transformed_lines
from tests.conftest import REPO_ROOT

SPEC = "tradepulse-vault:spec"


def reference(text: str) -> list[str] | str:
    """What detect-secrets' transformer makes of ``text`` (the exception's name if it raises)."""
    try:
        return list(YAMLTransformer().parse_file(io.StringIO(text)))
    except ParsingError:
        return "ParsingError"
    except Exception as exc:  # noqa: BLE001 - e.g. a bad timestamp escapes it as ValueError
        return type(exc).__name__


def check(text: str) -> bool:
    """Assert the fast lines are the transformer's; return whether the fast path applied."""
    fast = transformed_lines(text)
    if fast is None:
        return False
    expected = reference(text)
    assert fast == expected, text
    return True


def repository_yaml() -> list[str]:
    out = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "*.yaml", "*.yml"],
                         capture_output=True, text=True, check=True).stdout.split()
    return [n for n in out if (REPO_ROOT / n).is_file()]


@pytest.mark.parametrize("name", repository_yaml())
def test_the_repository_yaml_files_read_the_same(name: str) -> None:
    fast = check((REPO_ROOT / name).read_text(encoding="utf-8"))
    if name.startswith("Pulumi."):
        assert fast, f"{name} no longer takes the fast path: the gate slows down at scale"


def fleet_stack_file(services: int, *, flow: bool) -> str:
    """Pulumi.prod.yaml with ``services`` more services (and their secrets), dumped by PyYAML.

    Block style folds the long descriptions over lines; ``flow`` writes the
    leaf collections in flow style, one line each, as this repository does.
    """
    doc = yaml.safe_load((REPO_ROOT / "Pulumi.prod.yaml").read_text(encoding="utf-8"))
    spec = doc["config"][SPEC]
    services_0, secrets_0 = spec["services"][0], spec["static_secrets"][0]
    for i in range(services):
        service = copy.deepcopy(services_0)
        service["name"] = f"svc-{i:04d}"
        spec["services"].append(service)
        secret = copy.deepcopy(secrets_0)
        secret["path"] = f"services/svc-{i:04d}/secret-0"
        # Long enough for PyYAML to fold it over lines at width 120.
        secret["description"] = f"generated secret {i} " + "of a fleet " * 20
        spec["static_secrets"].append(secret)
    return "# generated\n" + yaml.safe_dump(doc, sort_keys=False, width=10**6 if flow else 120,
                                            default_flow_style=None if flow else False)


@pytest.mark.parametrize("flow", [False, True], ids=["block", "flow-leaves"])
def test_a_fleet_stack_file_takes_the_fast_path_and_reads_the_same(flow: bool) -> None:
    assert check(fleet_stack_file(60, flow=flow))


EDGE_CASES = [
    # (document, takes the fast path)
    ("", True),
    ("# only a comment\n", True),
    ("a: b\n", True),
    ("a: b # c\nd: 'e # f' # g\n", True),
    ("'quoted key': \"v \\\" w\"\n\"k2\": 'it''s'\n", True),
    ("a:\n  b\nc:\n  'd'\n", True),
    ("a: |\n  line 1\n  line 2\nb: >-\n  folded\n  text\n\nc: x\n", True),
    ("a: |+\n  kept\n\n\nb: y\n", True),
    ("a: first\n  second\n  third\nb: 'one\n  two'\n", True),
    ("a:\nb: ''\nc: ~\nd: 1\ne: 1.5\nf: yes\ng: 2026-01-02\n", True),
    ("- a: b\n  c: d\n- e\n- [f, g]\n", True),
    ("a: [x, y,\n    z]\nb: c\n", True),
    ("a: {b: c, d: {e: f}, g: [h]}\ni: j\n", True),
    ("a: [{b: c}, {d: e}]\nf: g\n", True),
    ("{a: b, c: {d: e}}\n", True),
    ("---\na: b\n...\n", True),
    ("ü: 日本\n'日本': ü # ü\nx: y\n", True),
    ("a: \"__value__\"\n__value__: x\n", True),
    # Outside the handled subset: the transformer runs itself.
    ("a: {b: c,\n  d: e}\n", False),
    ("a: [b: c]\n", False),
    ("a: &x v\nb: *x\n", False),
    ("a: !!str 1\nb: !!binary aGVsbG8=\n", False),
    ("? a\n: b\n", False),
    ("a: 1\na: 2\n", False),
    ("1: a\n", False),
    ("on: a\n", False),
    ("<<: {a: b}\n", False),
    ("a: =\n", False),
    ("a: 2026-13-45\n", False),
    ("a: __line__\n", False),
    ("a:\tb\n", False),
    ("a: b\r\nc: d\r\n", False),
    ("a: b\n---\nc: d\n", False),
    ("%YAML 1.1\n---\na: b\n", False),
    ("just a scalar\n", False),
    ("- a\n- b\n", True),
    ("[a, b]\n", True),
    ("a: b\n  c: d\n", False),  # not YAML at all
    ("x" * 1100 + ": b\n", False),
]


@pytest.mark.parametrize(("text", "fast"), EDGE_CASES, ids=[repr(t[:30]) for t, _ in EDGE_CASES])
def test_edge_cases_read_the_same(text: str, fast: bool) -> None:
    assert check(text) is fast
    if not fast:
        assert transformed_lines(text) is None


# --- generated documents --------------------------------------------------------------------

# Credential-shaped words are made at import time, so that this file holds none.
WORDS = ["a", "key", "password", "secret", "name", "db_pass", "token", "url", "x y", "x-y",
         "services/svc-0001/secret-1",
         "AKIA" + "".join(random.choices(string.ascii_uppercase, k=16)), secrets.token_hex(10),
         base64.b64encode(secrets.token_bytes(30)).decode(), "yes",
         "null", "1", "2.5", "2026-01-01", "ü", "日本", "{{password}}", "it's", 'say "hi"', "a: b",
         "a #b", "a#b"]
PLAIN_UNSAFE = tuple("-{?&*!|>'\"%@`#,[]}:")


class Doc:
    """A random YAML document in the layouts people write: block and flow, every scalar style."""

    def __init__(self, rnd: random.Random) -> None:
        self.r = rnd

    def word(self) -> str:
        if self.r.random() < 0.7:
            return self.r.choice(WORDS)
        alphabet = string.ascii_letters + string.digits + "-_/.+= "
        return "".join(self.r.choices(alphabet, k=self.r.randint(1, 40))).strip() or "k"

    def scalar(self, word: str) -> str:
        style = self.r.random()
        if (style < 0.6 and word.strip() == word and not word.startswith(PLAIN_UNSAFE)
                and ": " not in word and " #" not in word):
            return word
        if style < 0.8:
            return "'" + word.replace("'", "''") + "'"
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def key(self, used: set[str]) -> str:
        word = self.word()
        while word in used:
            word += "x"
        used.add(word)
        return self.scalar(word)

    def comment(self) -> str:
        return f" # {self.word()}" if self.r.random() < 0.15 else ""

    def flow_seq(self, depth: int) -> str:
        items = [self.scalar(self.word()) if depth > 1 or self.r.random() < 0.8
                 else self.flow_map(depth + 1) for _ in range(self.r.randint(0, 4))]
        joint = ",\n    " if self.r.random() < 0.2 else ", "
        return "[" + joint.join(items) + "]"

    def flow_map(self, depth: int = 0) -> str:
        used: set[str] = set()
        pairs = []
        for _ in range(self.r.randint(0, 3)):
            nested = depth <= 1 and self.r.random() < 0.2
            value = (self.flow_map(depth + 1) if self.r.random() < 0.5 else
                     self.flow_seq(depth + 1)) if nested else self.scalar(self.word())
            pairs.append(f"{self.key(used)}: {value}")
        return "{" + ", ".join(pairs) + "}"

    def value(self, indent: int, depth: int) -> str:  # noqa: PLR0911 - one case a layout
        """Text after ``key:``."""
        pick, sub = self.r.random(), indent + self.r.choice([2, 4])
        if depth < 3 and pick < 0.25:
            return self.comment() + "\n" + self.mapping(sub, depth + 1)
        if depth < 3 and pick < 0.4:
            return self.comment() + "\n" + self.sequence(self.r.choice([indent, sub]), depth + 1)
        if pick < 0.5:
            style = self.r.choice(["|", "|-", "|+", ">", ">-", "|2"])
            body = "\n".join(" " * sub + self.word() if self.r.random() < 0.9 else ""
                             for _ in range(self.r.randint(1, 4)))
            return f" {style}{self.comment()}\n{body}"
        if pick < 0.55:
            return " " + self.flow_map() + self.comment()
        if pick < 0.62:
            return " " + self.flow_seq(0) + self.comment()
        if pick < 0.67:
            return "\n" + " " * sub + self.scalar(self.word()) + self.comment()
        if pick < 0.72:
            return " word" + "".join(f"\n{' ' * sub}more{i}" for i in range(self.r.randint(1, 3)))
        if pick < 0.76:
            return ' "first' + "".join(f"\n{' ' * sub}line{i}"
                                       for i in range(self.r.randint(1, 3))) + '"'
        if pick < 0.8:
            return self.comment()
        return " " + self.scalar(self.word()) + self.comment()

    def mapping(self, indent: int, depth: int) -> str:
        used: set[str] = set()
        lines = []
        for _ in range(self.r.randint(1, 4)):
            if self.r.random() < 0.1:
                lines.append(" " * self.r.randint(0, indent + 2) + "# " + self.word())
            if self.r.random() < 0.1:
                lines.append("")
            if self.r.random() < 0.03:
                lines += [f"{' ' * indent}? {self.key(used)}",
                          f"{' ' * indent}:{self.value(indent, depth)}"]
                continue
            lines.append(f"{' ' * indent}{self.key(used)}:{self.value(indent, depth)}")
        return "\n".join(lines)

    def sequence(self, indent: int, depth: int) -> str:
        lines = []
        for _ in range(self.r.randint(1, 4)):
            pick = self.r.random()
            if pick < 0.5 and depth < 3:
                body = self.mapping(indent + 2, depth + 1)
                lines.append(" " * indent + "- " + body[indent + 2:]
                             if body.startswith(" " * (indent + 2) + self.r.choice("'\"abc"))
                             else " " * indent + "-\n" + body)
            elif pick < 0.6:
                lines.append(" " * indent + "- " + self.flow_map())
            else:
                lines.append(" " * indent + "- " + self.scalar(self.word()) + self.comment())
        return "\n".join(lines)

    def document(self) -> str:
        text = self.mapping(0, 0)
        if self.r.random() < 0.1:
            text = "---\n" + text
        return text + ("\n" if self.r.random() < 0.5 else "")


def test_generated_documents_read_the_same() -> None:
    fast = sum(check(Doc(random.Random(seed)).document()) for seed in range(400))
    assert fast > 150  # many take the fast path, so many compare something


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**64))
def test_more_generated_documents_read_the_same(seed: int) -> None:
    check(Doc(random.Random(seed)).document())


leaves = st.one_of(st.text(alphabet=string.printable.replace("\r", "").replace("\x0b", "")
                           .replace("\x0c", "") + "éü日", max_size=30),
                   st.integers(), st.booleans(), st.none(), st.sampled_from(WORDS))
trees = st.recursive(leaves, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.sampled_from(WORDS) | st.text(
        alphabet=string.ascii_letters + " -_:#'\"", max_size=12), kids, max_size=4)),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(tree=st.dictionaries(st.sampled_from(WORDS), trees, min_size=1, max_size=5),
       flow=st.sampled_from([False, True, None]), width=st.sampled_from([20, 80, 1000]),
       style=st.sampled_from([None, None, '"', "'", "|", ">"]), indent=st.sampled_from([2, 4]))
def test_documents_pyyaml_writes_read_the_same(tree: dict[str, Any], flow: bool | None,
                                               width: int, style: str | None,
                                               indent: int) -> None:
    check(yaml.dump(tree, default_flow_style=flow, width=width, default_style=style,
                    indent=indent, allow_unicode=True))


# --- inside detect-secrets' scanner -----------------------------------------------------------


def test_the_scanner_finds_the_same_with_the_fast_transformer(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(fleet_stack_file(30, flow=True))
    blob = base64.b64encode(secrets.token_bytes(30)).decode()
    (tmp_path / "planted.yaml").write_text(
        f"db:\n  password: '{secrets.token_urlsafe(12)}'\n"
        f"  token: hvs.{secrets.token_urlsafe(27)}\n"
        f"config:\n  aws: {{key: AKIA{secrets.token_hex(8).upper()}, "
        f"hmac: '{secrets.token_hex(20)}'}}\nblob: '{blob}'\nnested: [{{x: '{blob}'}}]\n")
    names = [*repository_yaml(), "fleet.yaml", "planted.yaml"]
    paths = [REPO_ROOT / n if (REPO_ROOT / n).is_file() else tmp_path / n for n in names]
    config = {"plugins_used": list(secret_scan.HEURISTIC_PLUGINS),
              "filters_used": list(secret_scan.FILTERS)}

    def scan() -> dict[str, list[tuple[int, str]]]:
        return {str(p): sorted((s.line_number, s.type) for s in scan_file(str(p)))
                for p in paths}

    with transient_settings(config):
        plain = scan()
        with fast_yaml_transformer():
            fast = scan()
    assert fast == plain
    assert plain[str(tmp_path / "planted.yaml")]


def test_the_transformer_is_restored_after_the_block() -> None:
    transformer = next(t for t in get_transformers() if isinstance(t, YAMLTransformer))
    with pytest.raises(RuntimeError), fast_yaml_transformer():
        assert "parse_file" in vars(transformer)
        raise RuntimeError
    assert "parse_file" not in vars(transformer)
