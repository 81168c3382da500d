"""``gate``: each offline check fails on a fixture that breaks it, and the real repository passes.

Every failing fixture starts from the ``stack_repo`` copy (stack files and
policies, committed), breaks one thing, and asserts that exactly the check
responsible fails, with a message naming the file and what to do. Fake
credentials are generated at run time, so no test file carries one.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
import string
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rotation.cli import main
from rotation.gates.offline import CHECK_NAMES
from rotation.gates.secret_scan import pem_block_lines, scan_tree
from tests.conftest import REPO_ROOT
from tests.planted import high_entropy_base64

SIGNING = "secret/services/execution/session-signing-key"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text()
    assert old in text, f"{name} no longer contains {old!r}"
    path.write_text(text.replace(old, new, 1))


def gate(capsys: pytest.CaptureFixture[str], root: Path, *extra: str) -> tuple[int, Any]:
    code = main(["gate", "--json", "--repo", str(root), *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def by_name(report: Any) -> dict[str, Any]:
    return {c["name"]: c for c in report["checks"]}


def failed(report: Any) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["ok"]]


def fake_aws_key() -> str:
    return "AKIA" + "".join(random.choices(string.ascii_uppercase + string.digits, k=16))


def pulumi_ciphertext() -> str:
    """The shape of Pulumi's passphrase/KMS ciphertext: v1:<12-byte nonce>:<sealed bytes>."""
    return (f"v1:{base64.b64encode(secrets.token_bytes(12)).decode()}:"
            f"{base64.b64encode(secrets.token_bytes(60)).decode()}")


def fake_vault_token() -> str:
    return "hvs." + secrets.token_urlsafe(27)


# --- passing runs -----------------------------------------------------------------------


def test_the_real_repository_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = gate(capsys, REPO_ROOT)
    assert code == 0, json.dumps([c for c in report["checks"] if not c["ok"]], indent=1)
    assert report["ok"] and report["failed"] == []
    assert [c["name"] for c in report["checks"]] == list(CHECK_NAMES)
    checks = by_name(report)
    assert checks["stack-files"]["summary"] == \
        "4 of 4 stack files validate: dr, local, prod, staging"
    assert "8 of 8 policies covered" in checks["acl-policies"]["summary"]
    assert "2 dr mirror(s) of prod" in checks["dr-mirrors"]["summary"]


def test_a_clean_copy_passes_with_a_readable_report(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gate", "--repo", str(stack_repo)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("gate passed, 0 warning(s), in ")
    for name in CHECK_NAMES:
        assert f"ok   {name}" in text


def test_json_is_the_only_stdout_and_unknown_revisions_are_bad_input(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = gate(capsys, stack_repo)
    assert code == 0 and report["base"] == "HEAD" and report["head"] == "working tree"
    assert main(["gate", "--json", "--repo", str(stack_repo), "--base", "nope"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"] == f"unknown git revision 'nope' in {stack_repo}"


# --- stack-files --------------------------------------------------------------------------


def test_an_invalid_stack_file_fails_stack_files(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.staging.yaml", "    environment: staging\n",
         "    environment: staging\n    colour: blue\n")
    code, report = gate(capsys, stack_repo)
    assert code == 1 and "stack-files" in failed(report)
    assert by_name(report)["stack-files"]["errors"] == [
        "Pulumi.staging.yaml: tradepulse-vault:spec.colour: unknown key (line 9)"]
    assert by_name(report)["stack-files"]["summary"].startswith("3 of 4 stack files validate")


# --- acl-policies -------------------------------------------------------------------------


def test_a_policy_that_does_not_parse_fails_acl_policies(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / "policies" / "acl" / "auditor.hcl"
    path.write_text(path.read_text() + '\npath "sys/health" {\n  capabilities = ["peek"]\n}\n')
    code, report = gate(capsys, stack_repo)
    # the capability diff cannot load it either: what it grants cannot be observed
    assert code == 1 and failed(report) == ["acl-policies", "rotation-plan"]
    errors = by_name(report)["acl-policies"]["errors"]
    assert errors == ["auditor.hcl: path \"sys/health\" has unknown capabilities ['peek']"]
    assert any(e.startswith("*: policies/acl/auditor.hcl at the head: the policy engine refuses")
               for e in by_name(report)["rotation-plan"]["errors"])


def test_a_policy_without_expectations_fails_acl_policies(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (stack_repo / "policies" / "acl" / "reporting.hcl").write_text(
        'path "secret/data/services/reporting/*" {\n  capabilities = ["read"]\n}\n')
    code, report = gate(capsys, stack_repo)
    assert code == 1 and failed(report) == ["acl-policies"]
    assert by_name(report)["acl-policies"]["errors"] == [
        "reporting: reporting.hcl has no expectations in expectations.yaml; add what it must "
        "allow and deny"]


def test_an_invalid_capability_matrix_fails_acl_policies(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "policies/acl/expectations.yaml",
         "{path: sys/mounts, capabilities: [read]}", "{path: sys/mounts, capabilities: [peek]}")
    code, report = gate(capsys, stack_repo, "--acknowledge", "weakening")
    assert code == 1 and failed(report) == ["acl-policies"]
    [error] = by_name(report)["acl-policies"]["errors"]
    assert error.startswith("expectations.yaml: policies.rotation-operator.allow.")
    assert "'peek' is not one of" in error


# --- rotation-plan ------------------------------------------------------------------------


def test_a_version_jump_fails_rotation_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.prod.yaml", "        version: 9\n", "        version: 11\n")
    code, report = gate(capsys, stack_repo)
    assert code == 1 and failed(report) == ["rotation-plan"]
    assert by_name(report)["rotation-plan"]["errors"] == [
        f"prod: {SIGNING}: version moved 9 -> 11; a rotation moves it by exactly +1"]


@pytest.mark.parametrize(("old", "new", "error"), [
    ("        version: 1 # bump: rotate the key now at apply\n", "        version: 3\n",
     "identity/oidc/key/tradepulse-adapters: version moved 1 -> 3"),
    ("          lease_generation: 1 # bump: revoke every lease of the role at apply\n",
     "          lease_generation: 3\n",
     "database/roles/tradepulse-execution: lease_generation moved 1 -> 3"),
])
def test_a_credential_version_off_by_more_than_one_fails_rotation_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, error: str
) -> None:
    edit(stack_repo, "Pulumi.local.yaml", old, new)
    code, report = gate(capsys, stack_repo)
    assert code == 1 and "rotation-plan" in failed(report)
    assert any(error in e for e in by_name(report)["rotation-plan"]["errors"]), report


def test_a_ciphertext_change_without_a_bump_fails_rotation_plan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / "Pulumi.prod.yaml"
    old_cipher = pulumi_ciphertext()
    path.write_text(path.read_text() + "  tradepulse-vault:brokerApiCredentials:\n"
                    f"    secure: {old_cipher}\n")
    git(stack_repo, "commit", "-qam", "provided secret ciphertext")
    edit(stack_repo, "Pulumi.prod.yaml", old_cipher, pulumi_ciphertext())
    code, report = gate(capsys, stack_repo, "--base", "HEAD")
    assert code == 1 and failed(report) == ["rotation-plan"]
    assert by_name(report)["rotation-plan"]["errors"] == [
        "prod: secret/services/execution/broker-api: ciphertext of brokerApiCredentials changed "
        "without a version bump (the new value would never be written)"]


def test_a_committed_range_is_planned_and_other_changes_are_warnings(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bump", "--stack", "staging", SIGNING, "--repo", str(stack_repo)]) == 0
    git(stack_repo, "commit", "-qam", "rotate")
    capsys.readouterr()
    code, report = gate(capsys, stack_repo, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 0 and report["ok"]
    plan = by_name(report)["rotation-plan"]
    assert plan["notes"][0] == f"rotation: staging {SIGNING} v5->v6"
    edit(stack_repo, "Pulumi.staging.yaml", "max_versions: 10", "max_versions: 12")
    git(stack_repo, "commit", "-qam", "tune")
    code, report = gate(capsys, stack_repo, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 0 and report["ok"]
    assert by_name(report)["rotation-plan"]["warnings"] == [
        "configuration: staging: KV mount secret: max_versions: 10 -> 12 (raised)"]
    assert main(["gate", "--repo", str(stack_repo), "--base", "HEAD~1", "--head", "HEAD"]) == 0
    assert "WARN rotation-plan" in capsys.readouterr().out
    code, report = gate(capsys, stack_repo, "--base", "HEAD~2", "--head", "HEAD")
    assert code == 1 and failed(report) == ["rotation-plan"], "a rotation mixed with a change"


def test_declaring_the_ci_due_roles_is_a_privilege_change_in_strict_stacks(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The base: the stack files and policies as they were before the ci-due roles.
    declared = subprocess.run(["git", "-C", str(stack_repo), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    for stack in ("prod", "staging", "dr"):
        name = f"Pulumi.{stack}.yaml"
        text = (stack_repo / name).read_text()
        start = text.index("          # The scheduled rotation-due workflow")
        end = text.index("token_max_ttl_seconds: 1800 # 30m\n", start) + len(
            "token_max_ttl_seconds: 1800 # 30m\n")
        (stack_repo / name).write_text(text[:start] + text[end:])
        edit(stack_repo, name, "      - ci-due\n", "")
    (stack_repo / "policies" / "acl" / "ci-due.hcl").unlink()
    matrix = stack_repo / "policies" / "acl" / "expectations.yaml"
    text = matrix.read_text()
    matrix.write_text(text[:text.index("  ci-due:\n")] + text[text.index("  break-glass:\n"):])
    git(stack_repo, "commit", "-qam", "before ci-due")
    assert "ci-due" not in (stack_repo / "Pulumi.prod.yaml").read_text()
    git(stack_repo, "checkout", declared, "--", ".")
    git(stack_repo, "commit", "-qam", "declare ci-due")

    code, report = gate(capsys, stack_repo, "--base", "HEAD~1", "--head", "HEAD")
    assert code == 1 and failed(report) == ["rotation-plan"]
    plan = by_name(report)["rotation-plan"]
    for stack in ("prod", "dr"):
        assert (f"{stack}: CI role ci-due-{stack}: entry: (none) -> added is a privilege change "
                "in a strict stack; it needs the label acknowledge:privilege (--acknowledge "
                "privilege)") in plan["errors"]
        assert any(e.startswith(f"{stack}: CI role ci-due-{stack} gains read on ")
                   for e in plan["errors"])
    assert not any(e.startswith("staging:") for e in plan["errors"])  # shown, not strict
    assert ("privilege: staging: CI role ci-due-staging: entry: (none) -> added (a new "
            "principal)") in plan["warnings"]
    # What each role gains, from the policy engine: reads, and only on metadata and roles.
    assert main(["plan", "--json", "--repo", str(stack_repo), "--base", "HEAD~1"]) == 1
    principals = json.loads(capsys.readouterr().out)["privilege"]["principals"]
    assert sorted(p["name"] for p in principals) == ["ci-due-dr", "ci-due-prod",
                                                     "ci-due-staging"]
    for principal in principals:
        assert principal["lost"] == {} and principal["new_policies"] == ["ci-due"]
        assert set(map(tuple, principal["gained"].values())) == {("read",)}
        assert all(path.startswith(("secret/metadata/services/", "database/static-roles/"))
                   for path in principal["gained"])
    code, report = gate(capsys, stack_repo, "--base", "HEAD~1", "--head", "HEAD",
                        "--acknowledge", "privilege")
    assert code == 0, by_name(report)["rotation-plan"]["errors"]


# --- secrets ------------------------------------------------------------------------------


def test_a_tracked_token_fails_secrets_without_echoing_it(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws, vault_token = fake_aws_key(), fake_vault_token()
    notes = stack_repo / "docs" / "notes.md"
    notes.parent.mkdir()
    notes.write_text(f"# Notes\n\nlogin with\n\n    export VAULT_TOKEN={vault_token}\n\n"
                     f"aws key {aws}\n")
    git(stack_repo, "add", "docs/notes.md")
    code = main(["gate", "--repo", str(stack_repo)])
    captured = capsys.readouterr()
    assert code == 1
    assert vault_token not in captured.out + captured.err
    assert aws not in captured.out + captured.err
    code, report = gate(capsys, stack_repo)
    errors = by_name(report)["secrets"]["errors"]
    assert failed(report) == ["secrets"]
    assert [e.split(": possible")[0] for e in errors] == [
        "docs/notes.md:5: Vault Token", "docs/notes.md:7: AWS Access Key"]
    assert all("add an allowlist entry with the reason" in e for e in errors)


def test_an_untracked_file_is_not_the_tree(stack_repo: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    (stack_repo / "scratch.txt").write_text(f"key {fake_aws_key()}\n")
    code, report = gate(capsys, stack_repo)
    assert code == 0, "only tracked files are the tree (CI scans the committed head)"
    assert "scratch.txt" not in json.dumps(report)


def test_plain_project_config_fails_secrets_and_secure_ciphertext_passes(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / "Pulumi.staging.yaml"
    original = path.read_text()
    cipher = pulumi_ciphertext()  # high entropy, like real KMS ciphertext
    path.write_text(original + "  tradepulse-vault:databaseRootPassword:\n"
                    f"    secure: {cipher}\n  tradepulse-vault:databaseRootUsername: "
                    f"{{secure: {pulumi_ciphertext()}}}\n")
    code, report = gate(capsys, stack_repo)
    assert code == 0, by_name(report)["secrets"]
    plain = "".join(random.choices(string.ascii_lowercase, k=12))
    path.write_text(original + f"  tradepulse-vault:databaseRootPassword: {plain}\n")
    code, report = gate(capsys, stack_repo)
    assert code == 1 and failed(report) == ["secrets"]
    lines = path.read_text().splitlines()
    keyword, structural = by_name(report)["secrets"]["errors"]
    assert keyword.startswith(f"Pulumi.staging.yaml:{len(lines)}: Secret Keyword: possible")
    assert structural == (
        f"Pulumi.staging.yaml:{len(lines)}: Plain config value: project config other than the "
        "spec must be `secure:` ciphertext (pulumi config set --secret)")
    assert plain not in json.dumps(report)


def test_inline_pragmas_do_not_silence_the_scan(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (stack_repo / "deploy.sh").write_text(
        f"export AWS_ACCESS_KEY_ID={fake_aws_key()}  # pragma: allowlist secret\n")
    git(stack_repo, "add", "deploy.sh")
    code, report = gate(capsys, stack_repo)
    assert code == 1
    assert by_name(report)["secrets"]["errors"][0].startswith("deploy.sh:1: AWS Access Key:")


def test_a_secret_in_a_yaml_block_scalar_is_found(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """detect-secrets' YAML parsing skips block scalars; the gate's raw pass does not."""
    values = stack_repo / "deploy" / "values.yaml"
    values.parent.mkdir()
    values.write_text("service:\n  name: reporting\n  extra: |\n"
                      f"    {secrets.token_urlsafe(48)}\n")
    git(stack_repo, "add", "deploy/values.yaml")
    code, report = gate(capsys, stack_repo)
    assert code == 1
    assert [e.split(": possible")[0] for e in by_name(report)["secrets"]["errors"]] == [
        "deploy/values.yaml:4: Base64 High Entropy String"]


def test_an_allowlist_entry_needs_a_reason(
    stack_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    allowlist = tmp_path / "allow.yaml"
    allowlist.write_text("version: 1\nentries:\n  - paths: ['*']\n    line: '.*'\n")
    code = main(["gate", "--json", "--repo", str(stack_repo), "--allowlist", str(allowlist)])
    assert code == 2
    assert json.loads(capsys.readouterr().out)["error"] == \
        "allow.yaml: entries.0: 'reason' is a required property"


def test_the_local_public_key_is_allowlisted_and_a_private_key_is_not(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The key's base64 lines look like secrets to the scanner...
    bare = scan_tree(stack_repo, [], ["Pulumi.local.yaml"])
    in_key = pem_block_lines(tuple((stack_repo / "Pulumi.local.yaml").read_text().splitlines()),
                             "PUBLIC KEY")  # the file also holds a (public) CA certificate
    key_lines = [f.line for f in bare.findings if f.detector == "Base64 High Entropy String"
                 and f.line in in_key]
    assert len(key_lines) == 7 - 1  # the 6 full base64 lines of the PEM body
    # ...and the allowlist's PEM PUBLIC KEY entry is what clears them.
    code, report = gate(capsys, stack_repo)
    assert code == 0
    assert not any("Pulumi.local.yaml" in e for e in by_name(report)["secrets"]["errors"])
    assert not any("PEM PUBLIC KEY" in n for n in by_name(report)["secrets"]["notes"])
    # and a private key in the same place would be one (the label is assembled here so
    # that this file itself holds no private-key marker)
    private = "RSA " + "PRIVATE" + " KEY"
    edit(stack_repo, "Pulumi.local.yaml", "-----BEGIN PUBLIC KEY-----",
         f"-----BEGIN {private}-----")
    edit(stack_repo, "Pulumi.local.yaml", "-----END PUBLIC KEY-----", f"-----END {private}-----")
    code, report = gate(capsys, stack_repo)
    assert code == 1
    assert any(e.startswith("Pulumi.local.yaml:") and "Private Key" in e
               for e in by_name(report)["secrets"]["errors"])


# --- dr-mirrors ---------------------------------------------------------------------------


def test_a_dr_mirror_prod_does_not_publish_fails_dr_mirrors(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.prod.yaml", "        consumers: [execution]\n        mirror_to_dr: "
         "true\n", "        consumers: [execution]\n")
    code, report = gate(capsys, stack_repo)
    assert code == 1 and failed(report) == ["dr-mirrors"]
    assert by_name(report)["dr-mirrors"]["errors"] == [
        f"Pulumi.dr.yaml: {SIGNING} is mirror_of prod but Pulumi.prod.yaml does not publish it "
        "(set mirror_to_dr: true there)"]


def test_dr_behind_prod_fails_dr_mirrors(stack_repo: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # prod publishes a secret dr declares as its own, and a new one dr does not have.
    edit(stack_repo, "Pulumi.prod.yaml", "        consumers: [analytics]\n",
         "        consumers: [analytics]\n        mirror_to_dr: true\n"
         "      - mount: secret\n        path: services/ingestion/replay-key\n"
         "        keys: [REPLAY_KEY]\n        version: 1\n        source: generated\n"
         "        rotation_interval_seconds: 2592000\n        consumers: [ingestion]\n"
         "        mirror_to_dr: true\n")
    code, report = gate(capsys, stack_repo)
    assert code == 1 and failed(report) == ["dr-mirrors"]
    assert by_name(report)["dr-mirrors"]["errors"] == [
        "Pulumi.prod.yaml: secret/services/analytics/warehouse-hmac is published to dr but "
        "Pulumi.dr.yaml declares its own version 2 instead of mirror_of: prod",
        "Pulumi.prod.yaml: secret/services/ingestion/replay-key is published to dr "
        "(mirror_to_dr) but Pulumi.dr.yaml does not mirror it: dr is behind prod"]


def test_dr_without_a_prod_policy_or_role_fails_dr_mirrors(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(stack_repo, "Pulumi.dr.yaml", "      - break-glass\n", "")
    edit(stack_repo, "Pulumi.dr.yaml", "          - name: ci-preview-dr\n",
         "          - name: ci-look-dr\n")
    code, report = gate(capsys, stack_repo, "--acknowledge", "destructive,privilege")
    assert code == 1 and failed(report) == ["dr-mirrors"]
    assert by_name(report)["dr-mirrors"]["errors"] == [
        "Pulumi.dr.yaml: lacks prod's ACL policy 'break-glass'",
        "Pulumi.dr.yaml: lacks prod's JWT role 'ci-preview-dr'"]


# --- the scanner's shortcuts lose nothing --------------------------------------------------


def planted_corpus(root: Path) -> list[str]:
    """Files with one of each credential the detectors know, generated now."""
    def rand(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(random.choices(alphabet, k=n))

    def b64url(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    jwt = f"{b64url({'alg': 'HS256', 'typ': 'JWT'})}.{b64url({'sub': 'ops'})}.{rand(43)}"
    entropy = high_entropy_base64()
    label = "RSA " + "PRIVATE" + " KEY"
    (root / "app.py").write_text(
        f'password = "{rand(14)}"\nAWS = "{fake_aws_key()}"\ntoken = "ghp_{rand(36)}"\n'
        f'url = "postgresql://admin:{rand(12)}@db:5432/x"\n'
        'template = "postgresql://{{username}}:{{password}}@db:5432/x"\n'
        f'hook = "xoxb-{rand(10, string.digits)}-{rand(12, string.digits)}-{rand(24)}"\n'
        f'jwt = "{jwt}"\nhexed = "{secrets.token_hex(20)}"\nblob = "{entropy}"\n'
        f'vault = "{fake_vault_token()}"\npulumi = "pul-{secrets.token_hex(20)}"\n'
        f'stripe = "sk_live_{rand(24)}"\nsecret = get_secret_key()\n')
    (root / "values.yaml").write_text(
        f"db:\n  password: {rand(16)}\n  url: postgresql://admin:{rand(12)}@db:5432/x\n"
        f"key: |\n  -----BEGIN {label}-----\n  {entropy}\ntoken: {fake_vault_token()}\n")
    (root / "notes.md").write_text(f"export VAULT_TOKEN={fake_vault_token()}\n")
    return ["app.py", "values.yaml", "notes.md"]


def test_the_gate_scanner_finds_all_that_detect_secrets_finds(tmp_path: Path) -> None:
    """The gate is detect-secrets as configured: all it reports, and more in YAML values."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    from rotation.gates import secret_scan

    names = planted_corpus(tmp_path)
    plain: set[tuple[str, int, str]] = set()
    with transient_settings(secret_scan.SETTINGS):  # detect-secrets' own scanner, alone
        get_mapping_from_secret_type_to_class.cache_clear()
        for name in names:
            plain |= {(name, s.line_number, s.type) for s in scan_file(str(tmp_path / name))}
    get_mapping_from_secret_type_to_class.cache_clear()
    gate_found = {(f.path, f.line, f.detector) for f in secret_scan.detect(tmp_path, names)}
    assert len(plain) >= 14
    assert plain <= gate_found
    # What detect-secrets alone does not read: the lines of a YAML block scalar (the
    # private key's marker on its own line, the block's unquoted base64 value).
    assert gate_found - plain == {("values.yaml", 5, "Private Key"),
                                  ("values.yaml", 6, "Base64 High Entropy String")}
    assert ("app.py", 5, "Basic Auth Credentials") not in gate_found  # the {{password}} template
