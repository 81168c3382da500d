"""``rotation.gates.secret_scan``: every class of hole a tamperer tried is closed.

Each test plants one kind of value where the scan used not to look (YAML
sequences, block and flow scalars, anchors; a fake ``secure:``; a private key
in an allowlisted public-key block; an oversized, non-UTF-8, oddly named,
symlinked or directory entry; HCL, Python and Markdown; files detect-secrets
skips by name) and asserts the scan reports it by file, line and detector,
never the value. Values are generated at run time, so no test file holds one.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from rotation.cli import main
from rotation.gates import secret_scan
from rotation.gates.secret_scan import (
    NOT_CIPHERTEXT,
    NOT_GO_SUM,
    UNSCANNABLE,
    AllowEntry,
    load_allowlist,
    scan_tree,
)
from tests.planted import high_entropy_base64 as entropy
from tests.planted import word_initial_token


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def repo(tmp_path: Path) -> Path:
    root = tmp_path / "scan"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    return root


def track(root: Path, name: str, content: str | bytes) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    git(root, "add", "--", name)


def vault_token() -> str:
    return "hvs." + secrets.token_urlsafe(27)


def ciphertext() -> str:
    """The shape of Pulumi's passphrase/KMS ciphertext: v1:<12-byte nonce>:<sealed bytes>."""
    return (f"v1:{base64.b64encode(secrets.token_bytes(12)).decode()}:"
            f"{base64.b64encode(secrets.token_bytes(40)).decode()}")


def found(root: Path, allow: list[AllowEntry] | None = None) -> set[tuple[str, int, str]]:
    result = scan_tree(root, allow or [])
    return {(f.path, f.line, f.detector) for f in result.findings}


# --- YAML in every position ---------------------------------------------------------------


@pytest.mark.parametrize(("document", "line"), [
    ("items:\n  - name: a\n  - {value}\n", 3),                      # a sequence item
    ("items: [a, {value}, b]\n", 1),                                # a flow sequence
    ("extra: >\n  folded text\n  {value}\n", 3),                    # a folded block scalar
    ("extra: |\n  first\n  {value}\n", 3),                          # a literal block scalar
    ("base: &anchor {value}\nother: *anchor\n", 1),                 # an anchor and its alias
    ("plain: {value}\n", 1),                                        # a plain mapping value
    ("nested:\n  - - deep\n    - {value}\n", 3),                    # a nested sequence
    ("---\nfirst: doc\n---\nsecond:\n  - {value}\n", 5),            # a second document
], ids=["sequence", "flow", "folded", "literal", "anchor", "plain", "nested", "documents"])
def test_an_unquoted_value_is_read_in_every_yaml_position(tmp_path: Path, document: str,
                                                          line: int) -> None:
    root = repo(tmp_path)
    value = entropy()
    track(root, "deploy/values.yaml", document.format(value=value))
    assert ("deploy/values.yaml", line, "Base64 High Entropy String") in found(root)


def test_yaml_that_does_not_parse_is_still_read_word_by_word(tmp_path: Path) -> None:
    root = repo(tmp_path)
    track(root, "broken.yaml", f"key: [unclosed\n  - {entropy()}\n")
    assert ("broken.yaml", 2, "Base64 High Entropy String") in found(root)


def test_a_token_in_a_yaml_sequence_is_found(tmp_path: Path) -> None:
    root = repo(tmp_path)
    track(root, "ci.yml", f"env:\n  - {vault_token()}\n")
    assert ("ci.yml", 2, "Vault Token") in found(root)


# --- every text format ----------------------------------------------------------------------


def test_hcl_python_markdown_and_named_as_binary_files_are_scanned(tmp_path: Path) -> None:
    root = repo(tmp_path)
    token = vault_token()
    track(root, "policies/acl/x.hcl", f'# token "{token}"\npath "a" {{}}\n')
    track(root, "tool.py", f'TOKEN = "{token}"\n')
    track(root, "docs/x.md", f"run `export VAULT_TOKEN={token}`\n")
    track(root, "logo.svg", f'<svg data="{token}"/>\n')  # detect-secrets skips .svg by name
    track(root, "deps.lock", f"token = {token}\n")
    got = found(root)
    for name, line in [("policies/acl/x.hcl", 1), ("tool.py", 1), ("docs/x.md", 1),
                       ("logo.svg", 1), ("deps.lock", 1)]:
        assert (name, line, "Vault Token") in got, name


def test_a_token_passed_as_an_argument_or_indexed_is_found(tmp_path: Path) -> None:
    """detect-secrets' default line filter skips such lines; the gate does not use it."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import transient_settings

    root = repo(tmp_path)
    aws = "AKIA" + secrets.token_hex(8).upper()
    track(root, "client.py", f'client = boto3.client("s3", aws_access_key_id="{aws}")\n'
                             f'token = tokens["ci"] or "{vault_token()}"\n')
    with_filter = {**secret_scan.SETTINGS, "filters_used": [
        *secret_scan.SETTINGS["filters_used"],
        {"path": "detect_secrets.filters.heuristic.is_indirect_reference"}]}
    with transient_settings(with_filter):  # the hole: detect-secrets' default filters
        get_mapping_from_secret_type_to_class.cache_clear()
        assert list(scan_file(str(root / "client.py"))) == []
    get_mapping_from_secret_type_to_class.cache_clear()
    assert found(root) == {("client.py", 1, "AWS Access Key"), ("client.py", 2, "Vault Token")}


def test_the_process_pool_finds_what_one_process_finds(tmp_path: Path) -> None:
    """detect-secrets' own pool (scan_files) and file-by-file scanning report the same."""
    root = repo(tmp_path)
    names = []
    for i in range(6):
        names.append(f"src/m{i}.py")
        track(root, names[-1], f'# module {i}\nTOKEN = "{vault_token()}"\nblob = "{entropy()}"\n')
        names.append(f"deploy/v{i}.yaml")
        track(root, names[-1], f"env:\n  - {vault_token()}\nextra: |\n  {entropy()}\n"
                               f"db:\n  password: {word_initial_token(12)}\n")
    names.append("logo.svg")
    track(root, "logo.svg", f'<svg data="{vault_token()}"/>\n')
    one = secret_scan.detect(root, names, processes=1)
    # The pool is used only from a single-threaded process (forking with other threads
    # alive can deadlock), which this test process, after the suite's servers and
    # managers, need not be: scan in a fresh interpreter, as the gate CLI does.
    script = ("import json, sys, threading\n"
              "from pathlib import Path\n"
              "from rotation.gates import secret_scan\n"
              "assert threading.active_count() == 1\n"
              "found = secret_scan.detect(Path(sys.argv[1]), sys.argv[2:], processes=2)\n"
              "print(json.dumps([[f.path, f.line, f.detector, f.note] for f in found]))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(root), *names],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pooled = [tuple(f) for f in json.loads(proc.stdout)]
    assert pooled == [(f.path, f.line, f.detector, f.note) for f in one]
    assert {(f.path, f.line, f.detector) for f in one} >= {
        ("src/m0.py", 2, "Vault Token"), ("src/m5.py", 3, "Base64 High Entropy String"),
        ("deploy/v3.yaml", 2, "Vault Token"), ("deploy/v3.yaml", 4, "Base64 High Entropy String"),
        ("deploy/v3.yaml", 6, "Secret Keyword"), ("logo.svg", 1, "Vault Token")}


def test_a_go_sum_holds_only_module_hashes(tmp_path: Path) -> None:
    root = repo(tmp_path)
    digest = base64.b64encode(secrets.token_bytes(32)).decode()
    track(root, "tools/go.sum", f"example.com/m v1.2.3 h1:{digest}\n"
                                f"example.com/m v1.2.3/go.mod h1:{digest}\n"
                                f"token {vault_token()}\n")
    assert found(root) == {("tools/go.sum", 3, NOT_GO_SUM)}


# --- secure: values must be ciphertext -------------------------------------------------------


def stack(provider: str, value_line: str) -> str:
    return (f"secretsprovider: {provider}\nconfig:\n  tradepulse-vault:spec:\n"
            f"    environment: x\n{value_line}")


def test_a_secure_value_must_be_ciphertext_of_the_stacks_provider(tmp_path: Path) -> None:
    root = repo(tmp_path)
    cipher = ciphertext()
    block, inline = (f"  tradepulse-vault:dbPassword:\n    secure: {cipher}\n",
                     f"  tradepulse-vault:dbPassword: {{secure: {cipher}}}\n")
    track(root, "Pulumi.good.yaml", stack("passphrase", block))
    track(root, "Pulumi.inline.yaml", stack("awskms://alias/x?region=eu-west-1", inline))
    aws = "AKIA" + secrets.token_hex(8).upper()
    track(root, "Pulumi.fake.yaml", stack("passphrase",
                                          f"  tradepulse-vault:dbPassword:\n    secure: {aws}\n"))
    # A Pulumi Cloud stack (no secretsprovider) holds the service's ciphertext, not v1:.
    track(root, "Pulumi.cloud.yaml", "config:\n  tradepulse-vault:dbPassword:\n"
                                     f"    secure: {cipher}\n")
    got = found(root, load_allowlist())  # the repository's: it clears the provider lines
    assert not any(f[0] in {"Pulumi.good.yaml", "Pulumi.inline.yaml"} for f in got), got
    assert ("Pulumi.fake.yaml", 6, NOT_CIPHERTEXT) in got
    assert ("Pulumi.fake.yaml", 6, "AWS Access Key") in got  # the line is not exempt either
    assert ("Pulumi.cloud.yaml", 3, NOT_CIPHERTEXT) in got


def test_a_value_that_only_starts_with_secure_is_not_exempt(tmp_path: Path) -> None:
    root = repo(tmp_path)
    token = vault_token()
    track(root, "Pulumi.x.yaml", stack("passphrase",
                                       f'    description: "secure: {token}"\n'))
    track(root, "notes.yaml", f"key:\n  secure: {token}\n")  # not a stack file: no exemption
    got = found(root, load_allowlist())
    assert ("Pulumi.x.yaml", 5, "Vault Token") in got
    assert ("notes.yaml", 2, "Vault Token") in got


def test_the_message_names_the_provider_and_never_the_value(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = repo(tmp_path)
    plain = secrets.token_urlsafe(30)
    track(root, "Pulumi.x.yaml", stack("passphrase",
                                       f"  tradepulse-vault:dbPassword:\n    secure: {plain}\n"))
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    assert main(["gate", "--json", "--repo", str(root)]) == 1
    out = capsys.readouterr()
    report = json.loads(out.out)
    errors = next(c for c in report["checks"] if c["name"] == "secrets")["errors"]
    assert any(e.startswith("Pulumi.x.yaml:6: Not Pulumi ciphertext: a `secure:` value must be "
                            "Pulumi ciphertext (not ciphertext of passphrase)") for e in errors)
    assert plain not in out.out + out.err


# --- PEM blocks ----------------------------------------------------------------------------


def test_a_private_key_inside_an_allowlisted_public_key_block_is_found(tmp_path: Path) -> None:
    root = repo(tmp_path)
    private = "RSA " + "PRIVATE" + " KEY"  # assembled, so this file holds no marker
    body = "\n".join(f"    {entropy()}" for _ in range(3))
    track(root, "keys.yaml", "pubkeys:\n  - |\n    -----BEGIN PUBLIC KEY-----\n"
                             f"    -----BEGIN {private}-----\n{body}\n"
                             f"    -----END {private}-----\n    -----END PUBLIC KEY-----\n")
    allow = [AllowEntry(("keys.yaml",), None, None, "PUBLIC KEY", False, "public key " * 3)]
    got = found(root, allow)
    assert ("keys.yaml", 4, "Private Key") in got
    assert ("keys.yaml", 5, "Base64 High Entropy String") in got
    # A clean public-key block is still what the entry clears.
    clean = "\n".join(f"    {entropy()}" for _ in range(3))
    track(root, "keys.yaml", "pubkeys:\n  - |\n    -----BEGIN PUBLIC KEY-----\n"
                             f"{clean}\n    -----END PUBLIC KEY-----\n")
    assert found(root, allow) == set()


# --- what cannot be scanned is a finding ------------------------------------------------


def test_a_file_too_large_fails_unless_allowlisted(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secret_scan, "MAX_FILE_BYTES", 1024)
    root = repo(tmp_path)
    track(root, "dump.json", '{"a": "' + "x" * 2000 + '"}\n')
    result = scan_tree(root, [])
    [finding] = result.findings
    assert (finding.path, finding.line, finding.detector) == ("dump.json", 0, UNSCANNABLE)
    assert "larger than" in finding.note
    allow = [AllowEntry(("dump.json",), None, None, None, True, "a fixture, no secret in it")]
    assert scan_tree(root, allow).findings == []


def test_non_utf8_content_and_odd_names_are_findings(tmp_path: Path) -> None:
    root = repo(tmp_path)
    track(root, "latin1.txt", "caf\xe9 token\n".encode("latin-1"))
    track(root, "odd\nname.txt", f"{vault_token()}\n")
    result = scan_tree(root, [])
    got = {(f.path, f.line, f.detector) for f in result.findings}
    assert ("latin1.txt", 0, UNSCANNABLE) in got
    assert ("odd\nname.txt", 0, UNSCANNABLE) in got
    assert ("odd\nname.txt", 1, "Vault Token") in got  # still read
    rendered = [f.render() for f in result.findings]
    assert "'odd\\nname.txt':0: Unscannable file" in rendered  # one line, escaped


def test_a_tracked_symlink_is_scanned_as_what_git_holds(tmp_path: Path) -> None:
    root = repo(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{vault_token()}\n")  # not the tree: must not be read through the link
    os.symlink(outside, root / "link.txt")
    git(root, "add", "link.txt")
    assert found(root) == set()


def test_the_allowlist_whole_file_kind_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "allow.yaml"
    path.write_text("version: 1\nentries:\n  - paths: ['a']\n    whole_file: true\n"
                    "    reason: a generated fixture with no secret in it\n")
    [entry] = load_allowlist(path)
    assert entry.whole_file and entry.describe() == "a (whole file)"


# --- stack-file names that are not regular files: findings, never a crash -------------------


@pytest.mark.parametrize("kind", ["directory", "symlink", "latin-1"])
def test_gate_and_plan_report_odd_stack_files_without_a_traceback(
        stack_repo: Path, capsys: pytest.CaptureFixture[str], kind: str) -> None:
    path = stack_repo / "Pulumi.evil.yaml"
    if kind == "directory":
        path.mkdir()
        (path / "x").write_text("x\n")
    elif kind == "symlink":
        os.symlink(stack_repo / "Pulumi.prod.yaml", path)
    else:
        path.write_bytes("config:\n  x: caf\xe9\n".encode("latin-1"))
    assert main(["gate", "--json", "--repo", str(stack_repo)]) == 1
    report = json.loads(capsys.readouterr().out)
    errors = next(c for c in report["checks"] if c["name"] == "stack-files")["errors"]
    assert any(e.startswith("Pulumi.evil.yaml: ") for e in errors), errors
    assert main(["plan", "--json", "--repo", str(stack_repo)]) == 1
    out = capsys.readouterr()
    plan = json.loads(out.out)
    assert any(f["stack"] == "evil" and f["severity"] == "error" for f in plan["findings"])
    assert "Traceback" not in out.err
