"""The ACL capability matrix against a real OpenBao policy engine (``sys/capabilities``).

Every ``policies/acl/*.hcl`` is written into a fresh dev server, a token is
created per policy, and every expectation in ``policies/acl/expectations.yaml``
is asked of the server itself. The other tests loosen policies on purpose, in a
temporary copy, and prove the matrix reports exactly that.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from kernel import paths
from rotation.gates.capabilities import (
    EXPECTATIONS_FILE,
    MatrixReport,
    check_matrix,
    load_expectations,
)

pytestmark = pytest.mark.integration

POLICIES = {"tradepulse-execution", "tradepulse-ingestion", "tradepulse-analytics",
            "rotation-operator", "auditor", "ci-preview", "ci-due", "break-glass"}


def policy_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "acl"
    shutil.copytree(paths.POLICY_DIR, copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1))


def rendered(report: MatrixReport) -> list[str]:
    return [v.render() for v in report.violations]


def test_every_policy_meets_its_capability_matrix(openbao: Any) -> None:
    expectations = load_expectations()
    report = check_matrix(openbao.client(), expectations)
    assert set(report.policies) == POLICIES == {p.stem for p in paths.POLICY_DIR.glob("*.hcl")}
    assert report.ok, report.render()
    # Every allow/deny entry plus the sudo probes of the six non-holders were asked.
    entries = sum(len(p.allow) + len(p.deny) for p in expectations.policies.values())
    probes = len(expectations.sudo_probe_paths) * (len(POLICIES) - 1)
    assert report.checked == entries + probes
    # The matrix tokens were revoked: only the root token's own accessor is left.
    accessors = openbao.client().auth.token.list_accessors()["data"]["keys"]
    assert len(accessors) == 1


def test_loosened_policies_fail_the_matrix(openbao: Any, tmp_path: Path) -> None:
    acl = policy_copy(tmp_path)
    # 1. execution's own-subtree glob widened to every service's secrets.
    edit(acl / "tradepulse-execution.hcl", 'path "secret/data/services/execution/*"',
         'path "secret/data/services/*"')
    # 2. ingestion may now also write its own secret.
    edit(acl / "tradepulse-ingestion.hcl",
         'path "secret/data/services/ingestion/*" {\n  capabilities = ["read"]',
         'path "secret/data/services/ingestion/*" {\n  capabilities = ["read", "update"]')
    # 3. the rotation operator gains the audit devices, with sudo.
    (acl / "rotation-operator.hcl").write_text(
        (acl / "rotation-operator.hcl").read_text()
        + '\npath "sys/audit*" {\n  capabilities = ["read", "update", "sudo"]\n}\n')
    # 4. the auditor can read secret data.
    (acl / "auditor.hcl").write_text(
        (acl / "auditor.hcl").read_text()
        + '\npath "secret/data/*" {\n  capabilities = ["read"]\n}\n')

    report = check_matrix(openbao.client(), load_expectations(), acl)

    assert not report.ok
    lines = rendered(report)
    assert ("tradepulse-execution: secret/data/services/ingestion/market-data-feed: expected no "
            "access; the engine grants read") in lines
    assert ("tradepulse-execution: secret/data/services/execution-shadow/api-key: expected no "
            "access; the engine grants read") in lines
    assert ("tradepulse-ingestion: secret/data/services/ingestion/market-data-feed: expected "
            "exactly read; the engine grants read, update") in lines
    assert ("rotation-operator: sys/audit: expected no sudo (only break-glass may hold it); "
            "the engine grants read, sudo, update") in lines
    assert ("rotation-operator: sys/audit/file-primary: expected no access; the engine grants "
            "read, sudo, update") in lines
    assert ("auditor: secret/data/services/execution/broker-api: expected no access; the "
            "engine grants read") in lines
    # Nothing else moved: every violation belongs to one of the four loosened policies.
    assert {v.policy for v in report.violations} == {
        "tradepulse-execution", "tradepulse-ingestion", "rotation-operator", "auditor"}


def test_a_tightened_policy_fails_too(openbao: Any, tmp_path: Path) -> None:
    """The matrix pins exact grants: a service that loses its own secret is caught."""
    acl = policy_copy(tmp_path)
    edit(acl / "tradepulse-analytics.hcl", 'path "database/creds/tradepulse-analytics"',
         'path "database/creds/tradepulse-analytics-old"')
    report = check_matrix(openbao.client(), load_expectations(), acl)
    assert rendered(report) == [
        "tradepulse-analytics: database/creds/tradepulse-analytics: expected exactly read; the "
        "engine grants nothing"]


def test_a_policy_without_expectations_fails(openbao: Any, tmp_path: Path) -> None:
    acl = policy_copy(tmp_path)
    (acl / "reporting.hcl").write_text(
        'path "secret/data/services/reporting/*" {\n  capabilities = ["read"]\n}\n')
    report = check_matrix(openbao.client(), load_expectations(), acl)
    assert "reporting" in report.policies
    assert rendered(report) == [
        "reporting: reporting.hcl has no expectations in expectations.yaml; add what it must "
        "allow and deny"]


def test_expectations_for_a_missing_policy_fail(openbao: Any, tmp_path: Path) -> None:
    acl = policy_copy(tmp_path)
    (acl / "auditor.hcl").unlink()
    report = check_matrix(openbao.client(), load_expectations(EXPECTATIONS_FILE), acl)
    assert rendered(report) == [
        "auditor: expectations.yaml has expectations but there is no auditor.hcl"]
