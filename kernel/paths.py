"""Where the repository's data files live, resolved from this file's location.

The Pulumi program, the rotation CLI and the tests all read the same schema
and policy files; resolving them here keeps every caller independent of the
current working directory (Pulumi runs ``infra/`` as the program directory).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
ENVIRONMENT_SCHEMA = SCHEMA_DIR / "environment.schema.json"
PROJECT_NAME = "tradepulse-vault"


def config_key(name: str) -> str:
    """Return the stack-config key Pulumi stores ``name`` under (``tradepulse-vault:<name>``)."""
    return f"{PROJECT_NAME}:{name}"


def policy_dir(root: Path) -> Path:
    """Return the ACL policy directory of the checkout at ``root`` (a test may use its own)."""
    return root / "policies" / "acl"


CONFIG_PREFIX = config_key("")  # what every key of this project's stack config starts with
SPEC_CONFIG_KEY = config_key("spec")
POLICY_DIR = policy_dir(REPO_ROOT)


def stack_file(stack: str, root: Path = REPO_ROOT) -> Path:
    """Return the path of ``Pulumi.<stack>.yaml`` under ``root``."""
    return root / f"Pulumi.{stack}.yaml"


def project_root(start: Path | None = None) -> Path:
    """Return the Pulumi project directory: the nearest ``Pulumi.yaml`` at or above ``start``.

    Pulumi runs the program in its ``main`` directory (``infra/``), so paths in
    the spec that are relative (``delivery.kubernetes.render_dir``) are resolved
    against the project, where a reviewer expects them.
    """
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return here
