"""pydantic's errors said as the spec's problems: key path, what was expected, never a secret."""

from __future__ import annotations

import copy
import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from kernel.spec.messages import Problem, problems_of
from kernel.spec.model import EnvironmentSpec
from tests.kernel.spec.test_loader import prod_spec

TOKEN = "hvs." + secrets.token_urlsafe(32)  # made here: the gate scans this file


def problems(mutate: Any) -> list[Problem]:
    spec = copy.deepcopy(prod_spec())
    mutate(spec)
    with pytest.raises(ValidationError) as caught:
        EnvironmentSpec.model_validate(spec)
    return problems_of(caught.value)


def test_a_token_pasted_as_a_key_is_named_by_its_length_only() -> None:
    found = problems(lambda s: s["limits"].update({TOKEN: 1}))
    assert found == [Problem(("limits", f"<{len(TOKEN)}-character key>"), "unknown key")]
    assert TOKEN not in repr(found)


def test_a_token_pasted_as_a_value_is_described_by_its_shape() -> None:
    def paste(spec: dict[str, Any]) -> None:
        spec["vault"]["flavour"] = TOKEN

    [found] = problems(paste)
    assert found.path == ("vault", "flavour")
    assert found.message == (f"a {len(TOKEN)}-character string is not one of 'vault', "
                             "'openbao'")


def test_a_failed_item_does_not_also_make_its_list_too_short() -> None:
    found = problems(lambda s: s["kv_mounts"][0].update({"max_versions": 0}))
    assert found == [Problem(("kv_mounts", 0, "max_versions"),
                             "0 is out of range: must be at least 1")]


def test_an_empty_list_is_too_short() -> None:
    found = problems(lambda s: s.update({"kv_mounts": []}))
    assert found == [Problem(("kv_mounts",), "a list of 0 items has too few items: "
                                             "at least 1")]


def test_keys_that_cannot_go_together_are_each_named() -> None:
    def mirror(spec: dict[str, Any]) -> None:
        spec["static_secrets"][1] = {
            "mount": "secret", "path": "services/x", "keys": ["A"], "mirror_of": "prod",
            "consumers": [], "version": 2, "source": "generated"}

    found = problems(mirror)
    reason = "not allowed together with mirror_of: a dr mirror takes value and version from prod"
    assert found == [Problem(("static_secrets", 1, "source"), reason),
                     Problem(("static_secrets", 1, "version"), reason)]
