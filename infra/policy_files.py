"""Read ACL policy HCL files (``policies/acl/<name>.hcl``) in pure helpers.

Components receive the text; they never open files themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from infra import paths


def read_policy(name: str, policy_dir: Path = paths.POLICY_DIR) -> str:
    """Return the HCL text of policy ``name``."""
    return (policy_dir / f"{name}.hcl").read_text(encoding="utf-8")


def read_policies(names: Iterable[str], policy_dir: Path = paths.POLICY_DIR) -> dict[str, str]:
    """Return ``{name: hcl}`` for every name, in the order given."""
    return {name: read_policy(name, policy_dir) for name in names}


VALID_CAPABILITIES = frozenset(
    {"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe"}
)


class PolicyParseError(ValueError):
    """A policy file is not valid HCL or not a valid ACL policy."""


def _unquote(value: str) -> str:
    # python-hcl2 >= 8 keeps the quotes of string literals and block labels.
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def parse_policy(text: str, source: str) -> dict[str, frozenset[str]]:
    """Parse ACL policy HCL into ``{path: capabilities}``; raise naming ``source`` if invalid."""
    import hcl2  # python-hcl2: a real HCL parser, not a regex

    try:
        doc = hcl2.loads(text)
    except Exception as exc:  # noqa: BLE001 - the parser raises several unrelated types
        raise PolicyParseError(f"{source}: not valid HCL: {str(exc).splitlines()[0]}") from None
    unknown = sorted(k for k in set(doc) - {"path"} if not k.startswith("__"))
    if unknown:
        raise PolicyParseError(f"{source}: unexpected top-level blocks {unknown}")
    rules: dict[str, frozenset[str]] = {}
    for block in doc.get("path", []):
        for raw_path, body in block.items():
            path = _unquote(raw_path)
            caps = body.get("capabilities") if isinstance(body, dict) else None
            if not isinstance(caps, list) or not caps:
                raise PolicyParseError(f'{source}: path "{path}" has no capabilities list')
            names = frozenset(_unquote(str(c)) for c in caps)
            bad = sorted(names - VALID_CAPABILITIES)
            if bad:
                raise PolicyParseError(f'{source}: path "{path}" has unknown capabilities {bad}')
            if path in rules:
                raise PolicyParseError(f'{source}: path "{path}" is declared twice')
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
