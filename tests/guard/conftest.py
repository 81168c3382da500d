"""Make the policy pack's rules package importable as it is when Pulumi runs the pack.

Also the fixture that resets Pulumi's stack config after a test set it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pulumi
import pytest

from tests.conftest import REPO_ROOT

PACK_DIR = REPO_ROOT / "policies" / "guard"
if str(PACK_DIR) not in sys.path:
    sys.path.insert(0, str(PACK_DIR))


@pytest.fixture
def stack_config() -> Iterator[dict[str, str]]:
    config: dict[str, str] = {}
    yield config
    pulumi.runtime.set_all_config({}, [])
