"""``rotation.rollback`` against a real OpenBao: which versions can be restored, and digests."""

from __future__ import annotations

import time
from typing import Any

import hvac
import hvac.exceptions
import pytest

from kernel.spec.model import StaticSecret
from rotation.rollback import restorable_problem, restored_matches

pytestmark = pytest.mark.integration

CANARY = "CANARY-rollback-history-3c8e"


def secret(restores: int | None) -> StaticSecret:
    return StaticSecret(mount="kv", path="services/x", keys=("K",), version=10,
                        source="generated", rotation_interval_seconds=86400, consumers=(),
                        restores=restores)


@pytest.fixture
def kv(openbao: Any) -> hvac.Client:
    client: hvac.Client = openbao.client()
    client.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
    client.secrets.kv.v2.configure(max_versions=3, mount_point="kv")
    for n in range(1, 6):  # versions 1..5; max_versions 3 keeps 3..5
        value = CANARY if n in {2, 5} else f"{CANARY}-{n}"
        for _ in range(50):  # a fresh kv-v2 mount upgrades for a moment before it writes
            try:
                client.secrets.kv.v2.create_or_update_secret(
                    path="services/x", secret={"K": value}, mount_point="kv")
                break
            except hvac.exceptions.InvalidRequest:
                time.sleep(0.1)
    return client


def test_pushed_out_destroyed_and_deleted_versions_are_named(kv: hvac.Client) -> None:
    assert "pushed out of the history by max_versions (oldest kept: 3)" in (
        restorable_problem(kv, secret(1)) or "")
    kv.secrets.kv.v2.destroy_secret_versions(path="services/x", versions=[3], mount_point="kv")
    kv.secrets.kv.v2.delete_secret_versions(path="services/x", versions=[4], mount_point="kv")
    assert "version 3 is destroyed" in (restorable_problem(kv, secret(3)) or "")
    problem = restorable_problem(kv, secret(4)) or ""
    assert "version 4 is deleted" in problem and "undelete" in problem
    assert restorable_problem(kv, secret(5)) is None
    assert "version 9 is not in the secret's history" in (restorable_problem(kv, secret(9)) or "")
    assert CANARY not in "".join(restorable_problem(kv, secret(n)) or "" for n in range(1, 10))


def test_digests_compare_data_without_returning_it(kv: hvac.Client) -> None:
    kv.secrets.kv.v2.create_or_update_secret(path="services/x", secret={"K": CANARY},
                                             mount_point="kv")  # v6 = v5's data
    assert restored_matches(kv, secret(5), 6) is True
    assert restored_matches(kv, secret(4), 6) is False
