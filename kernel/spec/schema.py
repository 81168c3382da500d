"""The JSON Schema of the spec, generated from the model, for editors.

``kernel/schema/environment.schema.json`` is what yaml-language-server and
IDEs read (through ``stack.schema.json``); the loader validates with the model
itself (:mod:`kernel.spec.model`), so the file is an output, never an input.
``python -m kernel.spec.schema`` rewrites it; ``--check`` exits 1 when the
committed file is not what the model generates (a test runs that).

Rules across keys (one of two shapes, keys that cannot go together) are the
model's validators and are not all expressible here; the editor schema is as
strict as JSON Schema lets it be, the loader is the judge.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from kernel import paths
from kernel.atomic import write_text_atomic
from kernel.spec.model import EnvironmentSpec

SCHEMA_ID = "https://tradepulse.internal/schemas/tradepulse-vault/environment.schema.json"


class _EditorSchema(GenerateJsonSchema):
    """pydantic's generator, without what editors would misread.

    An optional key is absent, not null (``null`` would be offered as a
    value), and titles repeat the key names.
    """

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        out = super().default_schema(schema)
        if out.get("default") is None:
            out.pop("default", None)
        return out


def generate() -> dict[str, Any]:
    """Return the schema document the model generates (ids and metaschema included)."""
    body = EnvironmentSpec.model_json_schema(by_alias=True, schema_generator=_EditorSchema)
    body.pop("title", None)
    for definition in body.get("$defs", {}).values():
        definition.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": "tradepulse-vault environment spec", **body}


def render() -> str:
    """Return the schema as the committed file holds it."""
    return json.dumps(generate(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) ``kernel/schema/environment.schema.json``."""
    parser = argparse.ArgumentParser(prog="python -m kernel.spec.schema",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed schema is not the generated one")
    args = parser.parse_args(argv)
    text = render()
    committed = paths.ENVIRONMENT_SCHEMA.read_text(encoding="utf-8") \
        if paths.ENVIRONMENT_SCHEMA.exists() else ""
    if args.check:
        if committed != text:
            print(f"{paths.ENVIRONMENT_SCHEMA.name} is not what the model generates; run "
                  "python -m kernel.spec.schema", file=sys.stderr)
            return 1
        return 0
    if committed != text:
        write_text_atomic(paths.ENVIRONMENT_SCHEMA, text, mode=0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
