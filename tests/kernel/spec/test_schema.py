"""The editor schema is generated from the model, and the committed file is that output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel import paths
from kernel.spec import schema


def test_the_committed_schema_is_what_the_model_generates() -> None:
    assert paths.ENVIRONMENT_SCHEMA.read_text(encoding="utf-8") == schema.render(), (
        "run: python -m kernel.spec.schema")
    assert schema.main(["--check"]) == 0


def test_the_check_fails_on_a_stale_schema(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    stale = paths.SCHEMA_DIR / "environment.schema.json"
    copy = tmp_path / "environment.schema.json"
    copy.write_text(stale.read_text(encoding="utf-8").replace('"strict"', '"strikt"', 1))
    monkeypatch.setattr(paths, "ENVIRONMENT_SCHEMA", copy)
    assert schema.main(["--check"]) == 1


def test_the_schema_keeps_the_rules_editors_can_check() -> None:
    document = json.loads(schema.render())
    assert document["$id"].endswith("/environment.schema.json")  # stack.schema.json's $ref
    assert document["additionalProperties"] is False
    secret = document["$defs"]["StaticSecret"]
    assert secret["additionalProperties"] is False
    assert "source" in secret["properties"] and "declared_source" not in secret["properties"]
    assert secret["properties"]["keys"]["uniqueItems"] is True
    assert secret["properties"]["version"] == {"maximum": 1000000, "minimum": 1,
                                               "type": "integer"}
    assert "delivery" in document["properties"]
    assert "null" not in json.dumps(document)  # an optional key is absent, never null
