"""Every class of change: refused in a strict stack without acknowledgement, passed with it,
passed in a non-strict stack; each shown as old -> new in words.

Each case edits prod (``strict: true``) and staging (``strict: false``) the same way in a
``stack_repo`` copy and runs ``plan --json`` (the gate runs the same plan). None of these
cases touches a policy file or a binding, so no policy engine is needed here; the
capability diff has its own tests (``test_privilege.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main


@dataclass(frozen=True)
class Case:
    name: str
    old: str
    new: str
    kind: str
    subject: str
    field: str
    shown: tuple[str, str] | None  # None: the values differ between prod and staging
    ack: str = ""  # the classes to acknowledge (default: the case's own)


CASES = [
    Case("cas-off", "        cas_required: true\n", "        cas_required: false\n",
         "weakening", "KV mount secret", "cas_required", ("true", "false")),
    Case("audit-file-path", "            file_path: /var/log/vault/audit.log\n",
         "            file_path: /tmp/audit.log\n", "weakening", "audit device file-primary",
         "options.file_path", ("/var/log/vault/audit.log", "/tmp/audit.log")),
    Case("audit-log-raw", "            file_path: /var/log/vault/audit.log\n",
         "            file_path: /var/log/vault/audit.log\n            log_raw: \"true\"\n",
         "weakening", "audit device file-primary", "options.log_raw", ("(none)", "true")),
    Case("weaker-generator", "        generator: {length: 64, alphabet: urlsafe}\n",
         "        generator: {length: 64, alphabet: alphanumeric}\n", "weakening",
         "secret secret/services/analytics/warehouse-hmac", "generator",
         ("{length: 64, alphabet: urlsafe}", "{length: 64, alphabet: alphanumeric}")),
    Case("issuer", "        bound_issuer: https://token.actions.githubusercontent.com\n",
         "        bound_issuer: https://issuer.example.test\n", "weakening", "JWT auth",
         "bound_issuer", ("https://token.actions.githubusercontent.com",
                          "https://issuer.example.test")),
    Case("namespace", "          namespace: trading\n", "          namespace: trading-sandbox\n",
         "privilege", "service execution", "kubernetes.namespace", ("trading", "trading-sandbox")),
    Case("service-token-ttl",
         "        token_ttl_seconds: 3600 # 1h\n        token_max_ttl_seconds: 14400",
         "        token_ttl_seconds: 7200 # 2h\n        token_max_ttl_seconds: 14400",
         "privilege", "service execution", "token_ttl_seconds", ("3600 s (1h)", "7200 s (2h)")),
    Case("renamed-secret", "        path: services/analytics/warehouse-hmac\n",
         "        path: services/analytics/warehouse-hmac-v2\n", "destructive",
         "secret secret/services/analytics/warehouse-hmac", "entry", ("present", "removed")),
    Case("vault-address", "      address: https://vault.", "      address: https://vault-proxy.",
         "weakening", "Vault", "address", None),
    Case("secrets-provider", "secretsprovider: awskms://alias/tradepulse-vault-",
         "secretsprovider: awskms://alias/elsewhere-", "weakening", "secrets provider",
         "secretsprovider", None),
    Case("ttl-cap", "      max_database_ttl_seconds: 86400 # 24h\n",
         "      max_database_ttl_seconds: 172800 # 48h\n", "weakening", "limits",
         "max_database_ttl_seconds", ("86400 s (1d)", "172800 s (2d)")),
    Case("write-role-on-pull-requests", "            branch: main\n",
         "            pull_requests: true\n", "weakening", "CI role ci-rotate-", "pull_requests",
         ("(none)", "true"), ack="weakening,privilege"),
    Case("fewer-versions", "        delete_version_after_seconds: 0 #",
         "        delete_version_after_seconds: 86400 #", "weakening", "KV mount secret",
         "delete_version_after_seconds", ("0 s", "86400 s (1d)")),
]


def _edit(root: Path, stack: str, old: str, new: str) -> None:
    path = root / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    assert old in text, f"Pulumi.{stack}.yaml has no {old!r}"
    path.write_text(text.replace(old, new, 1))


def _plan(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, Any]:
    code = main(["plan", "--json", "--repo", str(root), *extra])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_strict_stack_refuses_the_class_until_it_is_acknowledged(
    case: Case, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(stack_repo, "prod", case.old, case.new)
    code, plan = _plan(capsys, stack_repo)
    assert code == 1, plan
    shown = [c for c in plan["changes"] if c["stack"] == "prod" and c["kind"] == case.kind
             and c["subject"].startswith(case.subject) and c["field"] == case.field]
    assert shown, plan["changes"]
    if case.shown is not None:
        assert (shown[0]["old"], shown[0]["new"]) == case.shown
    assert any(f"needs the label acknowledge:{case.kind}" in f["message"]
               for f in plan["findings"]), plan["findings"]
    ack = case.ack or case.kind
    code, plan = _plan(capsys, stack_repo, "--acknowledge", ack)
    assert code == 0 and plan["ok"], plan["findings"]
    assert plan["acknowledged"] == sorted(ack.split(","))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_non_strict_stack_shows_the_class_and_passes(
    case: Case, stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(stack_repo, "staging", case.old, case.new)
    code, plan = _plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    assert any((c["stack"], c["kind"], c["field"]) == ("staging", case.kind, case.field)
               and c["subject"].startswith(case.subject) for c in plan["changes"])


@pytest.mark.integration  # a new stack brings new principals: the capability diff runs
def test_a_stack_named_like_production_is_judged_by_its_strict_flag(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prod = (stack_repo / "Pulumi.prod.yaml").read_text()
    (stack_repo / "Pulumi.prod-eu.yaml").write_text(
        prod.replace("    environment: prod\n", "    environment: prod-eu\n")
        .replace("        mirror_to_dr: true\n", ""))  # only prod itself feeds dr
    subprocess_git(stack_repo, "add", "Pulumi.prod-eu.yaml")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1, "a new stack declares its own strictness: it needs acknowledging"
    assert [(c["kind"], c["stack"], c["new"]) for c in plan["changes"]] == [
        ("privilege", "prod-eu", "added (strict: true)")]
    assert any(p["stack"] == "prod-eu" and p["gained"] for p in plan["privilege"]["principals"])
    code, plan = _plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 0, plan["findings"]
    subprocess_git(stack_repo, "commit", "-qm", "prod-eu")
    _edit(stack_repo, "prod-eu", "        cas_required: true\n", "        cas_required: false\n")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1 and plan["strict_stacks"] == ["dr", "prod", "prod-eu"]
    [finding] = plan["findings"]
    assert (finding["stack"], finding["message"]) == (
        "prod-eu", "KV mount secret: cas_required: true -> false is a weakening change in a "
        "strict stack; it needs the label acknowledge:weakening (--acknowledge weakening)")
    _edit(stack_repo, "prod-eu", "    strict: true", "    strict: false")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1, "switching strictness off is itself a weakening (strict at the base)"
    assert any((c["subject"], c["field"], c["old"], c["new"]) == ("environment", "strict", "true",
                                                                 "false")
               for c in plan["changes"])


def test_legitimate_changes_pass(stack_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(stack_repo, "prod", "        description: TradePulse static service secrets (KV v2)\n",
          "        description: TradePulse service secrets (KV v2, CAS)\n")
    _edit(stack_repo, "prod", "# Production Vault.", "# Production Vault (eu-west-1).")
    (stack_repo / "README.md").write_text("# notes\n")
    subprocess_git(stack_repo, "add", "README.md")
    code, plan = _plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    assert [(c["kind"], c["field"]) for c in plan["changes"]] == [("configuration",
                                                                   "description")]
    assert plan["other_files"] == ["README.md"]


def subprocess_git(root: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_a_lower_max_versions_is_a_weakening(stack_repo: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _edit(stack_repo, "prod", "        max_versions: 20\n", "        max_versions: 12\n")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1
    [change] = plan["changes"]
    assert (change["kind"], change["old"], change["new"]) == ("weakening", "20", "12")
    _edit(stack_repo, "prod", "        max_versions: 12\n", "        max_versions: 30\n")
    code, plan = _plan(capsys, stack_repo)
    assert code == 0 and plan["changes"][0]["kind"] == "configuration"


@pytest.mark.integration  # a binding changes: the capability diff runs on OpenBao
def test_break_glass_bound_to_a_service_or_declared_in_staging_needs_acknowledging(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(stack_repo, "staging", "      - ci-preview\n",
          "      - ci-preview\n      - break-glass\n")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1, "a sudo holder in a non-strict stack is refused there too"
    assert any(f["stack"] == "staging" and f["message"].startswith(
        "policy break-glass: loaded: (none) -> loaded is a weakening change in any stack")
        for f in plan["findings"]), plan["findings"]
    code, plan = _plan(capsys, stack_repo, "--acknowledge", "weakening")
    assert code == 0, plan["findings"]
    subprocess_git(stack_repo, "checkout", "--", "Pulumi.staging.yaml")
    _edit(stack_repo, "prod", "        policies: [tradepulse-analytics]\n",
          "        policies: [tradepulse-analytics, break-glass]\n")
    code, plan = _plan(capsys, stack_repo, "--acknowledge", "privilege")
    assert code == 1
    [change] = [c for c in plan["changes"] if c["kind"] == "weakening"]
    assert (change["subject"], change["field"]) == ("service analytics", "policies")
    assert "break-glass (a sudo holder, for named people only) bound to a role" in change["why"]
    analytics = next(p for p in plan["privilege"]["principals"]
                     if (p["stack"], p["name"]) == ("prod", "analytics"))
    assert "sudo" in analytics["gained"]["sys/audit"]
    code, plan = _plan(capsys, stack_repo, "--acknowledge", "privilege,weakening")
    assert code == 0, plan["findings"]


def test_config_values_are_never_shown(stack_repo: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import CANARY_DB_PASSWORD

    _edit(stack_repo, "staging", "config:\n",
          "config:\n  tradepulse-vault:databaseRootPassword:\n    secure: v1:OLDCIPHER\n")
    subprocess_git(stack_repo, "commit", "-qam", "ciphertext")
    _edit(stack_repo, "staging", "    secure: v1:OLDCIPHER\n",
          f"    secure: v1:{CANARY_DB_PASSWORD}\n  tradepulse-vault:note: {CANARY_DB_PASSWORD}\n")
    code, plan = _plan(capsys, stack_repo)
    assert CANARY_DB_PASSWORD not in json.dumps(plan)
    assert main(["plan", "--repo", str(stack_repo)]) == code
    assert CANARY_DB_PASSWORD not in capsys.readouterr().out
    assert [(c["subject"], c["new"]) for c in plan["changes"]] == [
        ("config tradepulse-vault:databaseRootPassword", "encrypted value changed"),
        ("config tradepulse-vault:note", "added (value not shown)")]


def test_a_stack_file_that_is_a_directory_or_not_utf8_is_a_finding(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (stack_repo / "Pulumi.scratch.yaml").mkdir()
    (stack_repo / "Pulumi.staging.yaml").write_bytes(b"config:\n  x: \xff\xfe\n")
    code, plan = _plan(capsys, stack_repo)
    assert code == 1
    messages = {f["stack"]: f["message"] for f in plan["findings"]}
    assert messages["scratch"].startswith("cannot plan Pulumi.scratch.yaml: a symlink or "
                                          "directory named like a stack file")
    assert messages["staging"].startswith("cannot plan Pulumi.staging.yaml: not UTF-8 text")


def test_an_unknown_acknowledgement_is_bad_input(stack_repo: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("plan", "gate"):
        assert main([command, "--repo", str(stack_repo), "--acknowledge", "privilege,root"]) == 2
        assert ("--acknowledge: unknown class 'root' (one of privilege, weakening, destructive)"
                in capsys.readouterr().err)


def test_a_workload_rename_is_configuration_not_privilege(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(stack_repo, "prod", "workload: {kind: Deployment, name: execution-connector}",
          "workload: {kind: Deployment, name: execution-connector-v2}")
    code, plan = _plan(capsys, stack_repo)
    assert code == 0, plan["findings"]
    assert [(c["kind"], c["subject"], c["field"], c["old"], c["new"]) for c in plan["changes"]] \
        == [("configuration", "service execution", "kubernetes.workload.name",
             "execution-connector", "execution-connector-v2")]
