"""Read ACL policy HCL files (``policies/acl/<name>.hcl``) in pure helpers.

Components receive the text; they never open files themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kernel import paths
from kernel.redact import describe, plainly_not_secret


def read_policy(name: str, policy_dir: Path = paths.POLICY_DIR) -> str:
    """Return the HCL text of policy ``name``."""
    return (policy_dir / f"{name}.hcl").read_text(encoding="utf-8")


def read_policies(names: Iterable[str], policy_dir: Path = paths.POLICY_DIR) -> dict[str, str]:
    """Return ``{name: hcl}`` for every name, in the order given."""
    return {name: read_policy(name, policy_dir) for name in names}


VALID_CAPABILITIES = frozenset(
    {"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe"}
)


def _shown(path: str) -> str:
    """Return a policy path as HCL writes it, or its shape when it could be a secret."""
    return f'"{path}"' if plainly_not_secret(path) else describe(path)


class PolicyParseError(ValueError):
    """A policy file is not valid HCL or not a valid ACL policy."""


def _unquote(value: str) -> str:
    # python-hcl2 >= 8 keeps the quotes of string literals and block labels.
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


# The canonical layout of our policy files: only ``path "<p>" { capabilities = [...] }``
# blocks, each on its own lines, plain strings (no escapes or templates), ``#``/``//``
# line comments. Text in exactly this form is read here in microseconds; anything
# else (other attributes, one-line blocks, escapes, errors) goes to python-hcl2, which
# takes milliseconds per file - the cost that dominated loading a 1000-service spec.
_LINE_GAP = r"(?:[ \t]*(?:(?:#|//)[^\n]*)?\n)"  # rest of a line, maybe a comment
_STR = r'"[^"\\$%\n]*"'
_FAST_BLOCK = re.compile(
    rf"[ \t]*path[ \t]+({_STR})[ \t]*\{{[ \t]*\n{_LINE_GAP}*"
    rf"[ \t]*capabilities[ \t]*=[ \t]*\[[ \t]*((?:{_STR}[ \t]*,[ \t]*)*(?:{_STR})?)[ \t]*\]"
    rf"[ \t]*\n{_LINE_GAP}*[ \t]*\}}[ \t]*(?:\n|\Z)"
)
_FAST_GAP = re.compile(rf"{_LINE_GAP}+|[ \t]*(?:(?:#|//)[^\n]*)?\Z")
_FAST_ITEM = re.compile(_STR)


def _fast_blocks(text: str) -> list[dict[str, dict[str, list[str]]]] | None:
    """Return ``hcl2.loads(text)["path"]``'s shape for canonical policy text, else None."""
    blocks: list[dict[str, dict[str, list[str]]]] = []
    pos, end = 0, len(text)
    while pos < end:
        gap = _FAST_GAP.match(text, pos)
        if gap is not None and gap.end() > pos:
            pos = gap.end()
            continue
        block = _FAST_BLOCK.match(text, pos)
        if block is None:
            return None
        caps = [item[1:-1] for item in _FAST_ITEM.findall(block.group(2))]
        blocks.append({block.group(1)[1:-1]: {"capabilities": caps}})
        pos = block.end()
    return blocks


def parse_policy(text: str, source: str) -> dict[str, frozenset[str]]:
    """Parse ACL policy HCL into ``{path: capabilities}``; raise naming ``source`` if invalid."""
    fast = _fast_blocks(text)
    if fast is not None and fast:
        doc: dict[str, Any] = {"path": fast}
    else:
        import hcl2  # python-hcl2: a real HCL parser, not a regex

        try:
            doc = hcl2.loads(text)
        except Exception as exc:  # noqa: BLE001 - the parser raises several unrelated types
            # The parser quotes the text it choked on; a pasted secret must not be repeated.
            first = re.sub(r"'([^']*)'", lambda m: describe(m.group(1)),
                           str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise PolicyParseError(f"{source}: not valid HCL: {first}") from None
    unknown = sorted(k for k in set(doc) - {"path"} if not k.startswith("__"))
    if unknown:
        raise PolicyParseError(f"{source}: unexpected top-level blocks "
                               f"[{', '.join(describe(k) for k in unknown)}]")
    rules: dict[str, frozenset[str]] = {}
    for block in doc.get("path", []):
        for raw_path, body in block.items():
            path = _unquote(raw_path)
            caps = body.get("capabilities") if isinstance(body, dict) else None
            if not isinstance(caps, list) or not caps:
                raise PolicyParseError(f"{source}: path {_shown(path)} has no capabilities list")
            names = frozenset(_unquote(str(c)) for c in caps)
            bad = sorted(names - VALID_CAPABILITIES)
            if bad:
                raise PolicyParseError(f"{source}: path {_shown(path)} has unknown capabilities "
                                       f"[{', '.join(describe(b) for b in bad)}]")
            if path in rules:
                raise PolicyParseError(f"{source}: path {_shown(path)} is declared twice")
            rules[path] = names
    if not rules:
        raise PolicyParseError(f"{source}: declares no path rules")
    return rules


def _rule_matches(rule: str, path: str) -> bool:
    """Vault ACL path matching: ``+`` is one segment, a trailing ``*`` is a prefix glob."""
    prefix = rule.endswith("*")
    body = rule[:-1] if prefix else rule
    rule_parts, path_parts = body.split("/"), path.split("/")
    if prefix:
        if len(path_parts) < len(rule_parts):
            return False
        last = len(rule_parts) - 1
        for i, part in enumerate(rule_parts):
            seg = path_parts[i]
            if part == "+":
                continue
            if i == last:
                return seg.startswith(part)
            if part != seg:
                return False
        return True
    return len(rule_parts) == len(path_parts) and all(
        r in {"+", p} for r, p in zip(rule_parts, path_parts, strict=True)
    )


def allows(rules: dict[str, frozenset[str]], path: str, capability: str) -> bool:
    """Return whether a parsed policy grants ``capability`` on ``path``.

    An approximation of Vault's matching for review-time checks (exact rule
    first, then the longest matching glob); the integration tests prove the
    policies against the real policy engine.
    """
    if path in rules:
        caps = rules[path]
    else:
        matching = [r for r in rules if r != path and _rule_matches(r, path)]
        if not matching:
            return False
        caps = rules[max(matching, key=lambda r: (len(r.rstrip("*")), not r.endswith("*")))]
    return capability in caps and "deny" not in caps
