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
