"""``verify --consumers``: inputs checked before anything is read; scope from the plan.

The logins themselves run against a real API server and OpenBao in
tests/integration/test_kubernetes_logins.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kernel.spec import load_stack_file
from rotation.cli import main
from rotation.consumers import audience_of
from tests.conftest import REPO_ROOT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else {}, err


def test_a_missing_kubeconfig_is_a_usage_error_before_vault_is_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Vault listens on port 1: a usage error must come first (exit 2, not 3).
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    code, payload, err = run(capsys, "verify", "--json", "--stack", "local", "--repo",
                             str(REPO_ROOT), "--address", "http://127.0.0.1:1", "--consumers",
                             "--kubeconfig", str(tmp_path / "missing"))
    assert code == 2, err
    assert "--kubeconfig" in str(payload["error"]) and "missing" in str(payload["error"])
    assert "Traceback" not in err


def test_a_stack_without_kubernetes_auth_is_refused_naming_the_field(
    capsys: pytest.CaptureFixture[str], stack_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack_file = stack_repo / "Pulumi.local.yaml"
    text = stack_file.read_text()
    start = text.index("      kubernetes:\n        path: kubernetes")
    end = text.index("      jwt:\n")
    stack_file.write_text(text[:start] + text[end:])
    monkeypatch.setenv("VAULT_TOKEN", "unused")
    code, payload, err = run(capsys, "verify", "--json", "--stack", "local", "--repo",
                             str(stack_repo), "--address", "http://127.0.0.1:1", "--consumers")
    assert code == 2, (payload, err)
    assert "Pulumi.local.yaml: tradepulse-vault:spec.services[0].kubernetes" in str(
        payload["error"]) and "auth.kubernetes is not declared" in str(payload["error"])


def test_the_token_audience_is_the_roles_bound_audience() -> None:
    spec = load_stack_file(REPO_ROOT / "Pulumi.local.yaml")
    assert spec.auth.kubernetes is not None
    assert audience_of(spec) == spec.auth.kubernetes.audience == "vault"
