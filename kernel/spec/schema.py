"""The environment JSON Schema, loaded once, and jsonschema's validator for it.

``jsonschema`` validates every spec and reports every problem with its key
path, which :mod:`kernel.spec.loader` turns into messages. The schema's local
``$ref``s are resolved once when the validator is built (the schema is
acyclic), so the validator does not resolve a reference on every visit and
its schema paths walk plain nested dicts.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from kernel import paths


@functools.cache
def raw_schema() -> Mapping[str, Any]:
    """Return ``kernel/schema/environment.schema.json`` as written."""
    return dict(json.loads(paths.ENVIRONMENT_SCHEMA.read_text(encoding="utf-8")))


def inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """Return ``node`` with every local ``#/$defs/<name>`` reference replaced by its target.

    The schema's references are local and acyclic, so they are resolved once
    here instead of by jsonschema's registry on every visit. A ``$ref`` whose
    siblings share a keyword with its target keeps both through ``allOf``
    (same semantics).
    """
    if isinstance(node, list):
        return [inline_refs(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: inline_refs(value, defs) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
        target = inline_refs(defs[ref[8:]], defs)
        del out["$ref"]
        if isinstance(target, dict) and not set(target) & set(out):
            out.update(target)
        else:
            out["allOf"] = [*out.get("allOf", []), target]
    return out


@functools.cache
def validator() -> jsonschema.Draft202012Validator:
    """Return jsonschema's validator for the schema (checked against its metaschema)."""
    schema = raw_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    inlined = inline_refs(schema, schema.get("$defs", {}))
    inlined.pop("$defs", None)
    return jsonschema.Draft202012Validator(inlined)
