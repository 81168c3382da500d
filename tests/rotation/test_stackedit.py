"""rotation.stackedit: an edit refuses a stack file the loader would refuse."""

from __future__ import annotations

import pytest

from rotation.errors import BadInput
from rotation.stackedit import parse_text


def test_a_duplicate_key_is_refused_with_the_loaders_message() -> None:
    text = ("config:\n  tradepulse-vault:spec:\n    static_secrets:\n"
            "      - version: 1\n        version: 2\n")
    with pytest.raises(BadInput) as caught:
        parse_text(text, "Pulumi.prod.yaml")
    assert str(caught.value) == (
        "Pulumi.prod.yaml: tradepulse-vault:spec.static_secrets[0].version: duplicate key "
        "(first at line 4); YAML would keep only the last (line 5) (nothing changed)")
