"""config_pipe.py: the language host's config arrives through a pipe, whole, and the shim runs.

The real engine path is ``tests/e2e/test_language_host_config.py``; here the
wrapper alone, with a stand-in for the upstream exec shim that reports what it
was given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PIPE = REPO_ROOT / "tools" / "toolchain" / "language-python" / "config_pipe.py"
SHIM = '''\
import json, os, sys
json.dump({"argv": sys.argv, "name": __name__, "config": os.environ.get("PULUMI_CONFIG"),
           "fd_variable": os.environ.get("TRADEPULSE_PULUMI_CONFIG_FD")}, sys.stdout)
'''


def run(tmp_path: Path, config: bytes | None) -> dict[str, object]:
    shim = tmp_path / "shim.py"
    shim.write_text(SHIM)
    env = {k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG"}
    fds: tuple[int, ...] = ()
    writer = None
    if config is not None:
        reader, write_end = os.pipe()
        env["TRADEPULSE_PULUMI_CONFIG_FD"] = str(reader)
        fds = (reader,)

        def feed() -> None:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(config)

        writer = threading.Thread(target=feed)
        writer.start()
    try:
        proc = subprocess.run([sys.executable, "-u", str(CONFIG_PIPE), str(shim), "--stack",
                               "dev", "program/"], env=env, pass_fds=fds, capture_output=True,
                              text=True, check=True, timeout=60)
    finally:
        if writer is not None:
            writer.join()
        for fd in fds:
            os.close(fd)
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def test_a_config_larger_than_a_pipe_buffer_arrives_whole(tmp_path: Path) -> None:
    config = json.dumps({"big:blob": "x" * (300 * 1024) + "!"}).encode()
    seen = run(tmp_path, config)
    assert seen["config"] == config.decode()
    assert seen["fd_variable"] is None, "the shim and the program do not see the pipe's name"
    assert seen["name"] == "__main__"
    assert seen["argv"] == [str(tmp_path / "shim.py"), "--stack", "dev", "program/"]


def test_without_a_pipe_the_shim_runs_with_no_config(tmp_path: Path) -> None:
    seen = run(tmp_path, None)
    assert seen["config"] is None
    assert seen["argv"][1:] == ["--stack", "dev", "program/"]  # type: ignore[index]


def test_an_empty_pipe_is_no_config_not_an_empty_one(tmp_path: Path) -> None:
    """The SDK parses PULUMI_CONFIG as JSON: an empty string there would fail the program."""
    seen = run(tmp_path, b"")
    assert seen["config"] is None
