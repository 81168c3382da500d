"""The environment JSON Schema, loaded once: jsonschema's validator and a compiled fast check.

``jsonschema`` is the reference: it reports every problem with its key path,
which :mod:`infra.spec.loader` turns into messages. It is also slow per node
(about 1 s for a 5,000-secret spec), and almost every spec we load is valid.
So a valid spec is recognised first by the same schema compiled to Python
code by ``fastjsonschema`` (about 4x faster); only a spec the fast check
rejects goes through jsonschema, whose verdict and problems are the ones
reported. The fast check can therefore only cost time, never change a
verdict, as long as it never accepts what jsonschema rejects: it is built
only when every keyword of the schema is one both libraries implement alike
(:data:`FAST_KEYWORDS`), and ``tests/infra/test_schema_fast_check.py`` checks
the two agree on valid specs and on thousands of mutated ones.

fastjsonschema's code generation takes ~0.2 s, more than validating a small
spec, so the generated module is kept in the user's cache directory
(``$XDG_CACHE_HOME/tradepulse-vault/schema-check/``, where the built Pulumi
toolchain lives too) as a marshalled code object, named by the hash of its
schema, fastjsonschema's version and the interpreter's cache tag (CI runs
with ``PYTHONDONTWRITEBYTECODE``, so Python's own bytecode cache is not
there to rely on). Without a writable cache the check is compiled in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from infra import paths

if TYPE_CHECKING:
    import jsonschema

FastCheck = Callable[[object], object]

# Keywords whose meaning is the same in jsonschema's 2020-12 validator and in
# fastjsonschema's draft-07 code (with dependentSchemas spelled `dependencies`).
FAST_KEYWORDS = frozenset({
    "$schema", "$id", "title", "description", "$comment", "default", "examples",
    "type", "enum", "const", "required", "properties", "additionalProperties",
    "propertyNames", "items", "minItems", "maxItems", "uniqueItems", "pattern", "minLength",
    "maxLength", "minimum", "maximum", "not", "anyOf", "oneOf", "allOf", "dependentSchemas",
})
_NAMED_SUBSCHEMAS = frozenset({"properties", "dependentSchemas"})  # {name: schema}
_DRAFT_07 = "http://json-schema.org/draft-07/schema#"


@functools.cache
def raw_schema() -> Mapping[str, Any]:
    """Return ``infra/schema/environment.schema.json`` as written."""
    return dict(json.loads(paths.ENVIRONMENT_SCHEMA.read_text(encoding="utf-8")))


def inline_refs(node: Any, defs: Mapping[str, Any]) -> Any:
    """Return ``node`` with every local ``#/$defs/<name>`` reference replaced by its target.

    jsonschema resolves a ``$ref`` on every visit through its registry, which was
    half the validation time of a 1000-service spec; the schema's references are
    local and acyclic, so they are resolved once here. A ``$ref`` whose siblings
    share a keyword with its target keeps both through ``allOf`` (same semantics).
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
    """Return jsonschema's validator for the schema (checked against its metaschema).

    Imported here: importing jsonschema costs ~0.2 s, paid only for a spec the
    fast check rejects.
    """
    import jsonschema

    schema = raw_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    inlined = inline_refs(schema, schema.get("$defs", {}))
    inlined.pop("$defs", None)
    return jsonschema.Draft202012Validator(inlined)


def fast_schema(schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """Return ``schema`` (refs inlined) for fastjsonschema's draft-07 code, or None.

    None when a keyword outside :data:`FAST_KEYWORDS` is used anywhere: then
    there is no fast check and every spec goes through jsonschema.
    """
    def convert(node: Any) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise LookupError(node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in FAST_KEYWORDS:
                raise LookupError(key)
            if key in _NAMED_SUBSCHEMAS:
                converted: Any = {name: convert(sub) for name, sub in value.items()}
            elif key in {"items", "additionalProperties", "propertyNames", "not"}:
                converted = convert(value)
            elif key in {"anyOf", "oneOf", "allOf"}:
                converted = [convert(sub) for sub in value]
            else:
                converted = value
            out["dependencies" if key == "dependentSchemas" else key] = converted
        return out

    inlined = inline_refs(schema, schema.get("$defs", {}))
    inlined.pop("$defs", None)
    try:
        fast = convert(inlined)
    except LookupError:
        return None
    fast["$schema"] = _DRAFT_07
    return dict(fast)


def _validate_function(namespace: Mapping[str, Any]) -> FastCheck:
    checks = [v for k, v in namespace.items() if k.startswith("validate") and callable(v)]
    if len(checks) != 1:
        raise ImportError(f"expected one validate function, found {len(checks)}")
    return checks[0]  # type: ignore[no-any-return]


@functools.cache
def fast_check() -> FastCheck | None:
    """Return the compiled fast check (raises on an invalid spec), or None if there is none."""
    import fastjsonschema

    schema = fast_schema(raw_schema())
    if schema is None:
        return None
    text = json.dumps(schema, sort_keys=True)
    digest = hashlib.sha256(f"{fastjsonschema.VERSION}\n{text}".encode()).hexdigest()[:24]
    name = f"environment-{digest}.{sys.implementation.cache_tag}.marshal"
    path = paths.user_cache_dir("schema-check") / name
    namespace: dict[str, Any] = {}
    try:
        try:
            code = marshal.loads(path.read_bytes())  # noqa: S302 - our own cache, see above
        except (OSError, EOFError, ValueError, TypeError):
            code = compile(fastjsonschema.compile_to_code(schema), str(path), "exec")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".environment-")
            with os.fdopen(fd, "wb") as out:
                out.write(marshal.dumps(code))
            os.replace(tmp, path)
        exec(code, namespace)  # noqa: S102 - fastjsonschema's generated validator
        return _validate_function(namespace)
    except (OSError, ImportError):
        return fastjsonschema.compile(schema)


def fast_valid(data: object) -> bool:
    """Return True when the fast check accepts ``data``; False means "ask jsonschema"."""
    import fastjsonschema

    check = fast_check()
    if check is None:
        return False
    try:
        check(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True
