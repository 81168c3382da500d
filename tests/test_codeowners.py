"""CODEOWNERS routes policies, strict stack files and the gate's own files to security.

The paths the plan classifies as the review machinery (``rotation.review.file_changes``)
and every stack file whose spec says ``strict: true`` must be owned by security, so a pull
request that touches them cannot merge without that review. The last matching line wins,
as on GitHub.
"""

from __future__ import annotations

import fnmatch

from kernel.spec import load_stack_file
from rotation.review.file_changes import ALLOWLIST, EXPECTATIONS, GATE_PATHS, POLICY_DIR
from tests.conftest import REPO_ROOT

SECURITY = "@tradepulse/security"


def owners(path: str) -> list[str]:
    """Return the owners of ``path`` (repository-relative) by the last matching line."""
    found: list[str] = []
    for line in (REPO_ROOT / ".github" / "CODEOWNERS").read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        pattern, *who = words
        anchored = pattern.lstrip("/")
        if anchored.endswith("/"):
            matched = path.startswith(anchored)
        else:
            matched = fnmatch.fnmatchcase(path, anchored)
        if matched:
            found = who
    return found


def test_every_strict_stack_file_needs_security() -> None:
    strict = [p.name for p in sorted(REPO_ROOT.glob("Pulumi.*.yaml"))
              if load_stack_file(p).strict]
    assert strict == ["Pulumi.dr.yaml", "Pulumi.prod.yaml"]
    for name in strict:
        assert SECURITY in owners(name), name


def test_a_non_strict_stack_file_is_owned_but_not_by_security() -> None:
    assert owners("Pulumi.staging.yaml") == ["@tradepulse/platform"]


def test_policies_and_the_gates_own_files_need_security() -> None:
    files = [f"{POLICY_DIR}break-glass.hcl", EXPECTATIONS, ALLOWLIST, ".github/CODEOWNERS",
             *(p if not p.endswith("/") else f"{p}x.py" for p in GATE_PATHS)]
    missing = [f for f in files if SECURITY not in owners(f)]
    assert missing == []
