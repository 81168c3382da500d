"""rotation.stackedit: an edit refuses a stack file the loader would refuse."""

from __future__ import annotations

import pytest

from rotation.errors import BadInput
from rotation.stackedit import parse_text, version_comment


def test_a_duplicate_key_is_refused_with_the_loaders_message() -> None:
    text = ("config:\n  tradepulse-vault:spec:\n    static_secrets:\n"
            "      - version: 1\n        version: 2\n")
    with pytest.raises(BadInput) as caught:
        parse_text(text, "Pulumi.prod.yaml")
    assert str(caught.value) == (
        "Pulumi.prod.yaml: tradepulse-vault:spec.static_secrets[0].version: duplicate key "
        "(first at line 4); YAML would keep only the last (line 5) (nothing changed)")


def test_the_version_comment_is_read_after_non_ascii_text() -> None:
    """The comment is found from the value's mark (a character index), not by splitting."""
    text = ("config:\n  tradepulse-vault:spec:\n    description: \"Überweisung → Ledger\"\n"
            "    static_secrets:\n      - mount: secret\n        path: services/a/b\n"
            "        version: 4 # quarterly (ticket SEC-1)\n")
    assert version_comment(parse_text(text, "Pulumi.x.yaml"), "secret/services/a/b",
                           "Pulumi.x.yaml") == "quarterly (ticket SEC-1)"
