"""``kv-put`` and :mod:`rotation.kvwrite` against a real OpenBao dev server.

The concurrent writer is played deterministically through ``cas_put``'s
``before_write`` hook (it runs after the read and before the write), so a
conflict happens exactly where a test wants it. Values are canaries that must
never reach stdout or stderr.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import hvac
import hvac.exceptions
import pytest

from rotation import kvwrite
from rotation.cli import main
from rotation.errors import CasConflict, CheckFailed
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.integration

CANARY = "CANARY-kvput-9f41d7c3"  # prefix of every value written; never printed
MOUNT = "secret"
PATH = "teams/payments/psp-webhook"  # not declared by any stack: kv-put may write it


def data_at(client: hvac.Client, path: str = PATH, version: int | None = None) -> dict[str, Any]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=MOUNT, raise_on_deleted_version=True)
    return dict(response["data"]["data"])


def current_version(client: hvac.Client, path: str = PATH) -> int:
    meta = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=MOUNT)
    return int(meta["data"]["current_version"])


def write(client: hvac.Client, data: dict[str, str], cas: int, path: str = PATH) -> int:
    response = client.secrets.kv.v2.create_or_update_secret(
        path=path, secret=data, cas=cas, mount_point=MOUNT)
    return int(response["data"]["version"])


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert CANARY not in captured.out, "a value reached stdout"
    assert CANARY not in captured.err, "a value reached stderr"
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def _logs_to_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop handlers an earlier CLI run bound to a since-closed captured stderr."""
    logger = logging.getLogger("rotation")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)


@pytest.fixture
def kv_env(monkeypatch: pytest.MonkeyPatch, openbao: Any) -> Any:
    """Token in VAULT_TOKEN and canary values in NEW_* variables."""
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    monkeypatch.setenv("NEW_API_KEY", f"{CANARY}-api-key")
    monkeypatch.setenv("NEW_REGION", f"{CANARY}-region")
    monkeypatch.setenv("NEW_API_KEY_2", f"{CANARY}-api-key-2")
    return openbao


def cli_base(server: Any, *extra: str) -> list[str]:
    return ["kv-put", "--address", server.address, "--mount", MOUNT, "--path", PATH,
            "--repo", str(REPO_ROOT), *extra]


def hooked(monkeypatch: pytest.MonkeyPatch, hook: kvwrite.BeforeWrite) -> None:
    """Make the CLI's cas_put run ``hook`` before every write (the concurrent writer)."""
    monkeypatch.setattr(kvwrite, "cas_put",
                        functools.partial(kvwrite.cas_put, before_write=hook))


# ------------------------------------------------------------------ CLI happy path


def test_kv_put_creates_with_cas_0_then_updates_keeping_other_keys(
    kv_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = kv_env.client()
    code, out, err = run_cli(capsys, *cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY",
                                               "--set", "REGION=NEW_REGION", "--json"))
    assert code == 0, err
    result = json.loads(out)
    assert (result["old_version"], result["new_version"], result["created"]) == (0, 1, True)
    assert result["keys_changed"] == ["API_KEY", "REGION"] and result["attempts"] == 1
    assert data_at(client) == {"API_KEY": f"{CANARY}-api-key", "REGION": f"{CANARY}-region"}

    code, out, err = run_cli(capsys, *cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY_2"))
    assert code == 0, err
    assert "version 1 -> 2" in out and "keys changed: API_KEY" in out and "attempts: 1" in out
    assert data_at(client) == {"API_KEY": f"{CANARY}-api-key-2", "REGION": f"{CANARY}-region"}

    # Same value again: nothing to write, no new version.
    code, out, _ = run_cli(capsys, *cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY_2",
                                             "--json"))
    result = json.loads(out)
    assert code == 0 and result["written"] is False and result["new_version"] == 2
    assert current_version(client) == 2


def test_kv_put_reads_a_json_object_from_stdin(
    kv_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"TOKEN": f"{CANARY}-stdin"})))
    code, out, err = run_cli(capsys, *cli_base(kv_env, "--stdin-json", "--json"))
    assert code == 0, err
    assert json.loads(out)["keys_changed"] == ["TOKEN"]
    assert data_at(kv_env.client()) == {"TOKEN": f"{CANARY}-stdin"}


# ----------------------------------------------------------- conflicts (library)


def test_non_overlapping_conflict_is_merged_and_retried(kv_env: Any) -> None:
    client = kv_env.client()
    write(client, {"A": f"{CANARY}-a0", "B": f"{CANARY}-b0"}, cas=0)
    other = kv_env.client()
    seen: list[kvwrite.Attempt] = []

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        seen.append(attempt)
        if attempt.number == 1:  # someone else changes B between our read and our write
            write(other, {"A": f"{CANARY}-a0", "B": f"{CANARY}-b1"}, cas=1)

    result = kvwrite.cas_put(client, MOUNT, PATH, {"A": f"{CANARY}-a1"},
                             before_write=concurrent_writer)
    assert seen == [kvwrite.Attempt(1, 1), kvwrite.Attempt(2, 2)]
    assert (result.old_version, result.new_version, result.attempts) == (1, 3, 2)
    assert result.merged_over == (2,) and result.keys_changed == ("A",) and result.written
    assert data_at(client) == {"A": f"{CANARY}-a1", "B": f"{CANARY}-b1"}


def test_overlapping_conflict_is_refused_and_nothing_is_written(kv_env: Any) -> None:
    client = kv_env.client()
    write(client, {"A": f"{CANARY}-a0", "B": f"{CANARY}-b0"}, cas=0)

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        write(kv_env.client(), {"A": f"{CANARY}-theirs", "B": f"{CANARY}-b0"}, cas=1)

    with pytest.raises(kvwrite.OverlappingChange) as caught:
        kvwrite.cas_put(client, MOUNT, PATH, {"A": f"{CANARY}-ours", "C": f"{CANARY}-c"},
                        before_write=concurrent_writer)
    error = caught.value
    assert error.keys == ("A",) and (error.base_version, error.latest_version) == (1, 2)
    assert error.exit_code == 1 and CANARY not in str(error) and CANARY not in (error.hint or "")
    assert current_version(client) == 2
    assert data_at(client) == {"A": f"{CANARY}-theirs", "B": f"{CANARY}-b0"}


def test_other_writer_setting_our_value_is_not_a_conflict(kv_env: Any) -> None:
    client = kv_env.client()
    write(client, {"A": f"{CANARY}-a0"}, cas=0)

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        write(kv_env.client(), {"A": f"{CANARY}-same"}, cas=1)

    result = kvwrite.cas_put(client, MOUNT, PATH, {"A": f"{CANARY}-same"},
                             before_write=concurrent_writer)
    assert result.written is False and result.new_version == 2 and result.attempts == 1
    assert current_version(client) == 2


def test_concurrent_create_conflicts_on_cas_0_and_merges(kv_env: Any) -> None:
    client = kv_env.client()

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        if attempt.number == 1:
            assert attempt.cas == 0
            write(kv_env.client(), {"THEIRS": f"{CANARY}-t"}, cas=0)

    result = kvwrite.cas_put(client, MOUNT, PATH, {"OURS": f"{CANARY}-o"},
                             before_write=concurrent_writer)
    assert (result.old_version, result.new_version, result.merged_over) == (0, 2, (1,))
    assert data_at(client) == {"THEIRS": f"{CANARY}-t", "OURS": f"{CANARY}-o"}


def test_deleted_current_version_is_refused(kv_env: Any) -> None:
    client = kv_env.client()
    write(client, {"A": f"{CANARY}-a0", "B": f"{CANARY}-b0"}, cas=0)
    client.secrets.kv.v2.delete_latest_version_of_secret(path=PATH, mount_point=MOUNT)
    with pytest.raises(CheckFailed, match="current version 1 is deleted"):
        kvwrite.cas_put(client, MOUNT, PATH, {"A": f"{CANARY}-a1"})
    client.secrets.kv.v2.destroy_secret_versions(path=PATH, versions=[1], mount_point=MOUNT)
    with pytest.raises(CheckFailed, match="deleted or destroyed"):
        kvwrite.cas_put(client, MOUNT, PATH, {"A": f"{CANARY}-a1"})
    assert current_version(client) == 1


# ------------------------------------------------------------- conflicts (CLI)


def test_cli_merges_a_non_overlapping_conflict(
    kv_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = kv_env.client()
    write(client, {"API_KEY": f"{CANARY}-old", "REGION": f"{CANARY}-eu"}, cas=0)

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        if attempt.number == 1:
            write(kv_env.client(), {"API_KEY": f"{CANARY}-old", "REGION": f"{CANARY}-us"}, cas=1)

    hooked(monkeypatch, concurrent_writer)
    code, out, err = run_cli(capsys, *cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY"))
    assert code == 0, err
    assert "version 1 -> 3" in out and "keys changed: API_KEY" in out
    assert "attempts: 2 (merged onto version(s) 2" in out
    assert data_at(client) == {"API_KEY": f"{CANARY}-api-key", "REGION": f"{CANARY}-us"}


@pytest.mark.parametrize("as_json", [False, True])
def test_cli_refuses_an_overlapping_conflict_naming_keys_and_versions(
    kv_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    as_json: bool,
) -> None:
    client = kv_env.client()
    write(client, {"API_KEY": f"{CANARY}-old", "REGION": f"{CANARY}-eu"}, cas=0)

    def concurrent_writer(attempt: kvwrite.Attempt) -> None:
        write(kv_env.client(), {"API_KEY": f"{CANARY}-theirs", "REGION": f"{CANARY}-eu"}, cas=1)

    hooked(monkeypatch, concurrent_writer)
    argv = cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY", "--set", "REGION=NEW_REGION")
    code, out, err = run_cli(capsys, *argv, *(["--json"] if as_json else []))
    assert code == 1
    assert "key(s) API_KEY changed in version 2" in err  # REGION did not clash
    assert "since version 1 was read" in err and "nothing was written" in err
    if as_json:
        payload = json.loads(out)
        assert payload["exit_code"] == 1 and "API_KEY" in payload["error"]
    else:
        assert out == ""
    assert current_version(client) == 2
    assert data_at(client)["API_KEY"] == f"{CANARY}-theirs"


def test_cli_gives_up_after_retries(
    kv_env: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = kv_env.client()
    write(client, {"NOISE": "0"}, cas=0)

    def busy_writer(attempt: kvwrite.Attempt) -> None:  # moves the secret before every write
        write(kv_env.client(), {"NOISE": str(attempt.number)}, cas=attempt.cas)

    hooked(monkeypatch, busy_writer)
    code, out, err = run_cli(capsys, *cli_base(kv_env, "--set", "API_KEY=NEW_API_KEY",
                                               "--retries", "2", "--json"))
    assert code == 1
    assert "gave up" in err and "after 3 attempts" in err
    assert json.loads(out)["exit_code"] == 1
    assert "API_KEY" not in data_at(client) and current_version(client) == 4


# ---------------------------------------------------------------- input checks


def test_repo_owned_path_is_refused_before_any_vault_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    refused_url: Callable[[], str],
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    monkeypatch.setenv("NEW_API_KEY", f"{CANARY}-owned")
    closed = refused_url()  # exit 2, not 3: Vault is never contacted
    for path in ("services/execution/broker-api", "/services/execution/broker-api/"):
        code, out, err = run_cli(capsys, "kv-put", "--address", closed, "--path", path,
                                 "--repo", str(REPO_ROOT), "--set", "API_KEY=NEW_API_KEY",
                                 "--json")
        assert code == 2
        for stack_file in ("Pulumi.prod.yaml", "Pulumi.staging.yaml", "Pulumi.dr.yaml",
                           "Pulumi.local.yaml"):
            assert stack_file in err
        assert "bump" in err and json.loads(out)["exit_code"] == 2


def test_bad_inputs_are_exit_2_and_never_echo_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
    refused_url: Callable[[], str],
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    monkeypatch.delenv("UNSET_VARIABLE", raising=False)
    closed = refused_url()
    base = ["kv-put", "--address", closed, "--path", PATH, "--repo", str(REPO_ROOT)]
    cases: list[tuple[list[str], str, str]] = [
        # A value typed where the variable name belongs: refused, and not echoed.
        ([*base, "--set", f"API_KEY={CANARY}-typed-inline"], "", "NAME of an environment"),
        ([*base, "--set", "API_KEY=UNSET_VARIABLE"], "", "unset or empty"),
        ([*base, "--set", "=NEW"], "", "KEY=ENVVAR"),
        ([*base, "--stdin-json"], f'{{"A": "{CANARY}", "B": 5}}', "string value"),
        ([*base, "--stdin-json"], f'["{CANARY}"]', "JSON object"),
        ([*base, "--stdin-json"], f'{{"A": "{CANARY}"', "not valid JSON"),
        (["kv-put", "--address", closed, "--path", f"data/{PATH}", "--repo",
          str(REPO_ROOT), "--set", "A=NEW"], "", "API prefix"),
        (["kv-put", "--address", closed, "--path", PATH, "--repo", str(tmp_path),
          "--set", "A=NEW"], "", "cannot check"),
    ]
    for argv, stdin, expected in cases:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, (argv, err)
        assert expected in err, (expected, err)


def test_only_kv_v2_mounts_are_written(
    kv_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = kv_env.client()
    client.sys.enable_secrets_engine("kv", path="kv1", options={"version": "1"})
    base = ["kv-put", "--address", kv_env.address, "--repo", str(REPO_ROOT),
            "--set", "API_KEY=NEW_API_KEY"]
    code, _, err = run_cli(capsys, *base, "--mount", "kv1", "--path", PATH)
    assert code == 2 and "not a KV version 2 mount" in err and "kv v1" in err
    with pytest.raises(hvac.exceptions.InvalidPath):  # nothing was written to the v1 mount
        client.secrets.kv.v1.list_secrets(path="", mount_point="kv1")
    code, _, err = run_cli(capsys, *base, "--mount", "secret/teams", "--path", "payments/x")
    assert code == 2 and "mount at secret/" in err
    code, _, err = run_cli(capsys, *base, "--mount", "no-such-mount", "--path", PATH)
    assert code == 1 and "no-such-mount" in err


# ------------------------------------------------------------- canary (process)


def test_canary_never_printed_by_the_real_process(kv_env: Any) -> None:
    """``python -m rotation`` with -v, text and --json, on success and on failure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(VAULT_TOKEN=kv_env.root_token, VAULT_ADDR=kv_env.address,
               PYTHONPATH=str(REPO_ROOT))
    argv = [sys.executable, "-m", "rotation", "-v", "kv-put", "--path", PATH,
            "--repo", str(REPO_ROOT), "--stdin-json"]
    runs = [  # (in-process tests cover the other text/--json x success/failure pairs)
        ([], {"K": f"{CANARY}-1", "L": f"{CANARY}-2"}, 0),
        (["--json", "--token-env", "NO_SUCH_TOKEN"], {"K": f"{CANARY}-3"}, 2),
    ]
    for extra, values, expected in runs:
        proc = subprocess.run([*argv, *extra], input=json.dumps(values), env=env,
                              capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
                              check=False)
        assert proc.returncode == expected, proc.stderr
        assert CANARY not in proc.stdout and CANARY not in proc.stderr
        if "--json" in extra:
            json.loads(proc.stdout)
    assert current_version(kv_env.client()) == 1


# ------------------------------------------------------------------ concurrency


def test_sixteen_concurrent_writers_lose_no_update(kv_env: Any) -> None:
    writers = 16
    # Keep every version (KV v2 keeps 10 by default) so each one can be checked below.
    kv_env.client().secrets.kv.v2.configure(max_versions=writers * 2, mount_point=MOUNT)
    barrier = threading.Barrier(writers, timeout=20)
    results: dict[int, kvwrite.PutResult] = {}
    failures: dict[int, BaseException] = {}

    def writer(i: int) -> Callable[[], None]:
        def go() -> None:
            def hook(attempt: kvwrite.Attempt) -> None:
                if attempt.number == 1:  # everyone has read version 0 before anyone writes
                    barrier.wait()
            try:
                results[i] = kvwrite.cas_put(kv_env.client(), MOUNT, PATH,
                                             {f"K{i:02d}": f"{CANARY}-{i}"},
                                             retries=writers - 1, before_write=hook)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failures[i] = exc
        return go

    threads = [threading.Thread(target=writer(i)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(r.new_version for r in results.values()) == list(range(1, writers + 1))
    assert sum(r.attempts for r in results.values()) > writers  # there really were conflicts
    client = kv_env.client()
    assert current_version(client) == writers
    assert data_at(client) == {f"K{i:02d}": f"{CANARY}-{i}" for i in range(writers)}
    # Every version is exactly the writes committed up to it: none lost, none reordered.
    for version in range(1, writers + 1):
        expected = {f"K{i:02d}": f"{CANARY}-{i}" for i, r in results.items()
                    if r.new_version <= version}
        assert data_at(client, version=version) == expected


def test_retries_exhausted_is_an_explicit_conflict_not_a_lost_write(kv_env: Any) -> None:
    client = kv_env.client()
    write(client, {"N": "0"}, cas=0)

    def busy(attempt: kvwrite.Attempt) -> None:
        write(kv_env.client(), {"N": str(attempt.number)}, cas=attempt.cas)

    with pytest.raises(CasConflict, match="gave up") as caught:
        kvwrite.cas_put(client, MOUNT, PATH, {"MINE": f"{CANARY}-m"}, retries=0,
                        before_write=busy)
    assert not isinstance(caught.value, kvwrite.OverlappingChange)
    assert "MINE" not in data_at(client)
