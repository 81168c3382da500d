"""The compiled fast check never accepts a spec jsonschema rejects (``infra.spec.schema``).

The fast check only decides "valid, skip jsonschema"; anything it rejects is
validated again by jsonschema, whose verdict counts. So the property that
matters is one-sided: fast-valid implies jsonschema-valid. It is checked on
the repository's specs and on thousands of mutated ones, where both verdicts
must occur (the test would prove nothing if every mutant were valid).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from infra import paths
from infra.spec import schema
from tests.conftest import STACKS


def stack_spec(stack: str) -> dict[str, Any]:
    doc = yaml.safe_load(paths.stack_file(stack).read_text(encoding="utf-8"))
    return dict(doc["config"][paths.SPEC_CONFIG_KEY])


def jsonschema_valid(data: object) -> bool:
    return bool(schema.validator().is_valid(data))


def test_the_fast_check_is_built_for_this_schema() -> None:
    """If a schema edit uses a keyword outside FAST_KEYWORDS, loading gets slow: say so here."""
    assert schema.fast_schema(schema.raw_schema()) is not None
    assert schema.fast_check() is not None


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_spec_passes_both(stack: str) -> None:
    spec = stack_spec(stack)
    assert schema.fast_valid(spec)
    assert jsonschema_valid(spec)


def test_an_unsupported_keyword_means_no_fast_check() -> None:
    raw = copy.deepcopy(dict(schema.raw_schema()))
    raw["properties"]["kv_mounts"]["prefixItems"] = [{"type": "object"}]
    assert schema.fast_schema(raw) is None


def test_dependent_schemas_become_draft_07_dependencies() -> None:
    fast = schema.fast_schema(schema.raw_schema())
    assert fast is not None
    secret = fast["properties"]["static_secrets"]["items"]
    assert "dependentSchemas" not in secret
    assert secret["dependencies"]["mirror_of"]["properties"]["version"] is False


# --- mutations -------------------------------------------------------------------------

VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 59, 60, 3600, 10**9, 1.5, "", "x", "prod", "Bad Name",
    "https://vault.example:8200", "a/b", "secret", "generated", "provided", "prod\n",
    [], ["x"], ["x", "x"], {}, {"a": 1}, {"host": "h"},
]


def _containers(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, node
    children = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, child in children:
        if isinstance(child, (dict, list)):
            yield from _containers(child, (*path, key))


def mutate(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Return a copy of ``spec`` with one random change: set, delete or add a key or item."""
    out = copy.deepcopy(spec)
    places = list(_containers(out))
    _, node = rng.choice(places)
    action = rng.choice(["set", "set", "delete", "add"])
    if isinstance(node, dict):
        if action == "add" or not node:
            node[rng.choice(["mirror_of", "outside_cluster", "kubernetes", "version", "colour",
                             "source", "generator", "config_secret"])] = rng.choice(VALUES)
        elif action == "delete":
            del node[rng.choice(list(node))]
        else:
            node[rng.choice(list(node))] = rng.choice(VALUES)
    elif isinstance(node, list):
        if action == "add" or not node:
            node.append(copy.deepcopy(rng.choice(node)) if node and rng.random() < 0.5
                        else rng.choice(VALUES))
        elif action == "delete":
            node.pop(rng.randrange(len(node)))
        else:
            node[rng.randrange(len(node))] = rng.choice(VALUES)
    return out


def test_fast_never_accepts_what_jsonschema_rejects_on_3000_mutants() -> None:
    rng = random.Random(20261127)
    seeds = [stack_spec(s) for s in STACKS]
    verdicts = {"both valid": 0, "both invalid": 0, "only jsonschema valid": 0}
    for i in range(3000):
        mutant = mutate(seeds[i % len(seeds)], rng)
        if rng.random() < 0.3:  # two changes: mixes, e.g. a mirror_of next to a version
            mutant = mutate(mutant, rng)
        fast, full = schema.fast_valid(mutant), jsonschema_valid(mutant)
        assert not (fast and not full), f"fast check accepted an invalid spec: {mutant}"
        verdicts["both valid" if fast else ("only jsonschema valid" if full else
                                            "both invalid")] += 1
    assert verdicts["both valid"] > 100, verdicts
    assert verdicts["both invalid"] > 1000, verdicts
    # Stricter is allowed (it costs a jsonschema pass) but must stay rare: it is the
    # `$` of a pattern, which fastjsonschema anchors at the very end ("prod\n" fails).
    assert verdicts["only jsonschema valid"] < 100, verdicts


@settings(max_examples=300, deadline=None)
@given(stack=st.sampled_from(STACKS), seed=st.integers(0, 2**32 - 1),
       changes=st.integers(1, 4))
def test_fast_never_accepts_what_jsonschema_rejects_hypothesis(stack: str, seed: int,
                                                                changes: int) -> None:
    rng = random.Random(seed)
    mutant = stack_spec(stack)
    for _ in range(changes):
        mutant = mutate(mutant, rng)
    if schema.fast_valid(mutant):
        assert jsonschema_valid(mutant)


# --- the cached generated code ------------------------------------------------------------

@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    schema.fast_check.cache_clear()
    yield tmp_path / "tradepulse-vault" / "schema-check"
    schema.fast_check.cache_clear()


def test_generated_code_is_cached_and_reused(fresh_cache: Path) -> None:
    check = schema.fast_check()
    assert check is not None
    files = list(fresh_cache.glob("environment-*.marshal"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    schema.fast_check.cache_clear()
    assert schema.fast_check() is not None
    assert files[0].stat().st_mtime_ns == stamp  # read, not written again
    assert schema.fast_valid(stack_spec("prod"))


def test_a_corrupt_cache_file_is_regenerated(fresh_cache: Path) -> None:
    schema.fast_check()
    (cached,) = fresh_cache.glob("environment-*.marshal")
    cached.write_bytes(b"\x00not marshal")
    schema.fast_check.cache_clear()
    assert schema.fast_valid(stack_spec("prod"))
    assert not schema.fast_valid({"environment": "prod"})
    assert cached.read_bytes() != b"\x00not marshal"


def test_an_unwritable_cache_compiles_in_memory(fresh_cache: Path) -> None:
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_text("a file where the directory should be")
    assert schema.fast_valid(stack_spec("staging"))
    assert not schema.fast_valid({"environment": "staging"})
