"""Make the policy pack's rules package importable as it is when Pulumi runs the pack."""

from __future__ import annotations

import sys

from tests.conftest import REPO_ROOT

PACK_DIR = REPO_ROOT / "policies" / "guard"
if str(PACK_DIR) not in sys.path:
    sys.path.insert(0, str(PACK_DIR))
