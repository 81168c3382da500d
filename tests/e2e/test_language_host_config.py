"""The language host hands a program a config larger than one environment variable may be.

Upstream Pulumi puts a Python program's whole config in ``PULUMI_CONFIG``; Linux
refuses to start a process with a variable over 128 KiB (``argument list too
long``), which a stack spec passes at about 60 services. Our language host
(``tools/toolchain/language-python``) writes the config into a pipe that
``config_pipe.py`` reads. Here a throwaway project with a 300 KiB config value
and a secret runs ``pulumi up`` on the real engine: the program sees both whole,
and the secret stays out of everything the engine prints.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml

from tools.localenv import REPO_ROOT, Workspace

pytestmark = pytest.mark.e2e

BIG = 300 * 1024  # over Linux's MAX_ARG_STRLEN (128 KiB) for one variable
PROGRAM = '''\
import hashlib
import pulumi

config = pulumi.Config("big")
blob = config.require("blob")
pulumi.export("blob_length", len(blob))
pulumi.export("blob_sha256", hashlib.sha256(blob.encode()).hexdigest())
token = config.require_secret("token")
pulumi.export("token_length", token.apply(len))
pulumi.export("token_is_secret", token.apply(lambda t: t.startswith("canary-")))
'''


def project(root: Path, program: str) -> Workspace:
    """A throwaway project running ``program``, with one stack ``dev`` on a file backend."""
    (root / "Pulumi.yaml").write_text(yaml.safe_dump({
        "name": "big-config", "main": "program/", "runtime": {
            "name": "python",
            "options": {"toolchain": "pip", "virtualenv": str(REPO_ROOT / ".venv")}}}))
    (root / "program").mkdir()
    (root / "program" / "__main__.py").write_text(program)
    ws = Workspace(root, "dev", root / "state", "test-passphrase", "", "")
    ws.backend_dir.mkdir()
    ws.pulumi("stack", "init", "--secrets-provider", "passphrase")
    return ws


def test_a_stack_without_config_runs(engine: str, tmp_path: Path) -> None:
    """No config at all: the program sees none (an empty pipe is not an empty JSON text)."""
    ws = project(tmp_path, 'import pulumi\npulumi.export("keys", len(pulumi.Config("big").'
                           'get_object("nothing") or {}))\n')
    ws.pulumi("up", "--yes", "--skip-preview")
    assert json.loads(ws.pulumi("stack", "output", "--json").stdout) == {"keys": 0}


def test_a_config_over_128_kib_reaches_the_program_whole(engine: str, tmp_path: Path) -> None:
    import hashlib

    blob = "x" * (BIG - 1) + "!"  # the last byte shows nothing was cut
    canary = f"canary-{secrets.token_hex(16)}"
    ws = project(tmp_path, PROGRAM)
    ws.pulumi("config", "set", "--secret", "big:token", input_text=canary)
    doc = yaml.safe_load(ws.stack_file.read_text())
    doc["config"]["big:blob"] = blob  # written to the file: as an argument it would not fit
    ws.stack_file.write_text(yaml.safe_dump(doc))

    up = ws.pulumi("up", "--yes", "--skip-preview")
    out = json.loads(ws.pulumi("stack", "output", "--json").stdout)

    assert out["blob_length"] == BIG
    assert out["blob_sha256"] == hashlib.sha256(blob.encode()).hexdigest()
    assert out["token_length"] == "[secret]" and out["token_is_secret"] == "[secret]"
    shown = json.loads(ws.pulumi("stack", "output", "--json", "--show-secrets").stdout)
    assert shown["token_length"] == len(canary) and shown["token_is_secret"] is True
    assert canary not in up.stdout + up.stderr
