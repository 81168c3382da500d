"""Races: concurrent ``kv-put`` processes and a ``pulumi up``-style CAS write against a rival.

Every accepted write is accounted for and no update is lost: with the JSON
result of each writer process, each KV version ``v`` must equal version
``v - 1`` plus exactly the keys of the one writer that reports
``new_version == v``. Every refused write exits 1 and names the version it
conflicted with. The CAS race replays, iteration after iteration, what
``pulumi up`` does (write version N with ``cas = N - 1``) while an
out-of-band writer does the same: exactly one wins, the loser is refused
with check-and-set, and the live data is exactly the winner's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hvac
import hvac.exceptions
import pytest

from tests.conftest import REPO_ROOT
from tests.reliability.support import child_env

pytestmark = pytest.mark.integration

MOUNT = "secret"
WRITERS = 16
CAS_ITERATIONS = 20
CANARY = "CANARY-race"
_REFUSED = re.compile(r"changed in version (\d+) by another writer since version (\d+) was read")


def version_data(client: hvac.Client, path: str, version: int) -> dict[str, Any]:
    if version == 0:
        return {}
    answer = client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=MOUNT, raise_on_deleted_version=True)
    return dict(answer["data"]["data"])


def concurrent_kv_puts(server: Any, path: str, keys: list[str]) -> list[tuple[int, dict[str, Any],
                                                                              str, str]]:
    """Start one ``kv-put --json`` process per key at once; return (exit, JSON, key, value)."""
    procs = []
    for i, key in enumerate(keys):
        value = f"{CANARY}-{i}"
        env = child_env(VAULT_TOKEN=server.root_token, VALUE=value)
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "rotation", "kv-put", "--json", "--address", server.address,
             "--path", path, "--set", f"{key}=VALUE", "--retries", str(WRITERS),
             "--repo", str(REPO_ROOT)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), key, value))
    out = []
    for proc, key, value in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert CANARY not in stdout and CANARY not in stderr
        assert "Traceback" not in stderr, stderr
        out.append((proc.returncode, json.loads(stdout), key, value))
    return out


def assert_every_version_accounted_for(client: hvac.Client, path: str,
                                       results: list[tuple[int, dict[str, Any], str, str]]
                                       ) -> int:
    """Each version is the previous one plus exactly one accepted writer's key; return the last."""
    accepted = {doc["new_version"]: (key, value) for code, doc, key, value in results
                if code == 0}
    assert len(accepted) == sum(1 for code, *_ in results if code == 0), "two writers, one version"
    current = int(client.secrets.kv.v2.read_secret_metadata(
        path=path, mount_point=MOUNT)["data"]["current_version"])
    assert sorted(accepted) == list(range(1, current + 1)), "a version nobody accounts for"
    previous: dict[str, Any] = {}
    for version in range(1, current + 1):
        key, value = accepted[version]
        assert version_data(client, path, version) == {**previous, key: value}, version
        previous = {**previous, key: value}
    return current


def test_sixteen_kv_put_processes_on_one_path_lose_no_update(openbao: Any) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(max_versions=4 * WRITERS, mount_point=MOUNT)
    results = concurrent_kv_puts(openbao, "teams/race/distinct",
                                 [f"K{i:02d}" for i in range(WRITERS)])
    failed = [(key, doc.get("error"), doc.get("hint")) for code, doc, key, _ in results if code]
    assert failed == [], failed
    last = assert_every_version_accounted_for(client, "teams/race/distinct", results)
    assert last == WRITERS
    assert version_data(client, "teams/race/distinct", last) == {
        key: value for _, _, key, value in results}
    assert sum(doc["attempts"] for _, doc, *_ in results) >= WRITERS


def test_kv_put_processes_on_the_same_keys_are_refused_naming_the_version(
    openbao: Any,
) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(max_versions=4 * WRITERS, mount_point=MOUNT)
    path = "teams/race/shared"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"KEEP": "x"},
                                                 mount_point=MOUNT, cas=0)
    # Two writers per key: whoever read an older version than a rival's write is refused.
    writers = WRITERS // 2
    results = concurrent_kv_puts(openbao, path, [f"S{i % 4}" for i in range(writers)])
    accepted = {doc["new_version"]: (key, value) for code, doc, key, value in results
                if code == 0}
    accepted[1] = ("KEEP", "x")
    refused = [(doc, key, value) for code, doc, key, value in results if code != 0]
    assert {code for code, *_ in results} <= {0, 1}
    assert len(accepted) - 1 + len(refused) == writers
    for doc, key, _value in refused:
        assert doc["ok"] is False and doc["exit_code"] == 1
        match = _REFUSED.search(doc["error"])
        assert match is not None and key in doc["error"], doc["error"]
        latest, base = int(match.group(1)), int(match.group(2))
        assert latest > base
        # The version it names really changed that key, and the refused value is nowhere.
        assert version_data(client, path, latest)[key] != version_data(client, path, base).get(key)
    current = int(client.secrets.kv.v2.read_secret_metadata(
        path=path, mount_point=MOUNT)["data"]["current_version"])
    assert sorted(accepted) == list(range(1, current + 1))
    previous: dict[str, Any] = {}
    for version in range(1, current + 1):
        key, value = accepted[version]
        assert version_data(client, path, version) == {**previous, key: value}, version
        previous = {**previous, key: value}
    for _doc, key, value in refused:
        assert all(version_data(client, path, v).get(key) != value
                   for v in range(1, current + 1))


def test_pulumi_style_cas_write_racing_an_out_of_band_writer(openbao: Any) -> None:
    client = openbao.client()
    client.secrets.kv.v2.configure(cas_required=True, max_versions=4 * CAS_ITERATIONS,
                                   mount_point=MOUNT)
    path = "services/race/cas"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"K": "v1"}, cas=0,
                                                 mount_point=MOUNT)
    wins = {"pulumi": 0, "out-of-band": 0}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for iteration in range(CAS_ITERATIONS):
            n = iteration + 2  # the version both want to write
            barrier = threading.Barrier(2, timeout=10)

            def write(who: str, n: int = n, barrier: threading.Barrier = barrier
                      ) -> tuple[str, dict[str, str], BaseException | None]:
                data = {"K": f"{who}-{n}"}
                writer = openbao.client()
                barrier.wait()
                try:
                    writer.secrets.kv.v2.create_or_update_secret(
                        path=path, secret=data, cas=n - 1, mount_point=MOUNT)
                except hvac.exceptions.InvalidRequest as exc:
                    return who, data, exc
                return who, data, None

            outcomes = list(pool.map(write, ("pulumi", "out-of-band")))
            winners = [o for o in outcomes if o[2] is None]
            losers = [o for o in outcomes if o[2] is not None]
            assert len(winners) == 1 and len(losers) == 1, outcomes
            assert "check-and-set" in str(losers[0][2])
            meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=MOUNT)
            assert int(meta["data"]["current_version"]) == n
            assert version_data(client, path, n) == winners[0][1]
            wins[winners[0][0]] += 1
    assert sum(wins.values()) == CAS_ITERATIONS
