"""Bad input: a table of malformed inputs, each refused with its exit code, a message naming
what is wrong, and nothing written; plus property tests of the spec loader and of ``bump``.

Each table row starts from the ``stack_repo`` copy (stack files and policies,
committed), breaks one thing, and runs the CLI in-process (a traceback fails
the test). ``--address`` points at a closed port, so a command that reached
for Vault instead of refusing its input would exit 3, not 2. After each run
every file of the repository is compared byte for byte with before the run.

The property tests (hypothesis) check that the spec loader, fed arbitrary
YAML-shaped data and mutations of a real spec, only ever raises
:class:`~kernel.spec.SpecError`, and that ``bump_version_text`` on generated
version lines either changes exactly the version digits (re-parse equality)
or raises :class:`~rotation.errors.BadInput`, in which case the CLI leaves the
file's bytes as they were.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel.spec import SpecError, parse_spec
from rotation.cli import main
from rotation.errors import BadInput
from rotation.stackedit import bump_version_text
from tests.conftest import REPO_ROOT
from tests.reliability.support import repo_files

SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"
LOCAL = "Pulumi.local.yaml"
PROD = "Pulumi.prod.yaml"
KEY = "tradepulse-vault:spec"


def edit(old: str, new: str, name: str = LOCAL) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / name
        text = path.read_text()
        assert old in text, f"{name} no longer contains {old!r}"
        path.write_text(text.replace(old, new, 1))
    return apply


def write(name: str, data: bytes) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / name).write_bytes(data)
    return apply


def spec_edit(change: Callable[[dict[str, Any]], None], name: str = LOCAL
              ) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        doc = yaml.safe_load((root / name).read_text())
        change(doc["config"][KEY])
        (root / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return apply


def nothing(_root: Path) -> None:
    return None


@dataclass(frozen=True)
class Case:
    """One malformed input: how to break the repo, the argv, the exit code, the message."""

    id: str
    setup: Callable[[Path], None]
    argv: list[str]
    code: int
    fragment: str
    stdin: str | None = None


DRIFT = ["drift", "--stack", "local"]
GATE = ["gate"]
BAD_ENV = "bad.env"

CASES = [
    # stack YAML syntax
    Case("yaml-unclosed-bracket", edit("keys: [SIGNING_KEY]", "keys: [SIGNING_KEY"), DRIFT, 2,
         "did not find expected"),
    Case("yaml-bad-indent", edit("    environment: local", "  environment: local\n oops"),
         DRIFT, 2, "Pulumi.local.yaml"),
    Case("yaml-not-a-mapping", write(LOCAL, b"- just\n- a list\n"), DRIFT, 2,
         "no `config:` mapping"),
    Case("yaml-empty-file", write(LOCAL, b""), DRIFT, 2, "no `config:` mapping"),
    Case("yaml-no-spec-key", write(LOCAL, b"config:\n  other: 1\n"), DRIFT, 2,
         "required key is missing"),
    Case("yaml-tab-indent", edit("    environment: local", "\tenvironment: local"), DRIFT, 2,
         "Pulumi.local.yaml"),
    # schema violations
    Case("schema-unknown-key", spec_edit(lambda s: s.update(colour="blue")), DRIFT, 2,
         "colour"),
    Case("schema-version-string", spec_edit(
        lambda s: s["static_secrets"][1].update(version="two")), DRIFT, 2,
        "static_secrets[1].version"),
    Case("schema-version-negative", spec_edit(
        lambda s: s["static_secrets"][1].update(version=-3)), DRIFT, 2,
        "static_secrets[1].version"),
    Case("schema-max-versions-negative", spec_edit(
        lambda s: s["kv_mounts"][0].update(max_versions=-1)), DRIFT, 2, "kv_mounts[0]"),
    Case("schema-unknown-policy", spec_edit(
        lambda s: s["services"][0].update(policies=["root-ish"])), DRIFT, 2, "root-ish"),
    Case("schema-duplicate-audit-path", spec_edit(
        lambda s: s["audit"]["devices"].append(copy.deepcopy(s["audit"]["devices"][0]))),
        DRIFT, 2, "duplicate audit path"),
    Case("schema-file-audit-without-path", spec_edit(
        lambda s: s["audit"]["devices"][0]["options"].pop("file_path")), DRIFT, 2,
        "file_path"),
    Case("schema-environment-mismatch", spec_edit(lambda s: s.update(environment="prod")),
         DRIFT, 2, "Pulumi.local.yaml"),
    # unknown secret paths
    Case("bump-unknown-secret", nothing, ["bump", "--stack", "local", "secret/nope/x"], 2,
         "unknown secret 'secret/nope/x'"),
    Case("kv-put-api-prefix", nothing, ["kv-put", "--path", "data/x", "--set", "K=HOME"], 2,
         "API prefix"),
    Case("kv-put-repo-owned", nothing, ["kv-put", "--path", "services/execution/broker-api",
                                        "--set", "K=HOME"], 2, "this repository owns it"),
    Case("verify-unknown-lease-role", nothing, ["verify", "--stack", "local",
                                                "--expect-leases", "nope"], 3,
         "cannot reach Vault"),
    # version decrements and jumps (against the committed HEAD)
    Case("version-decrement", edit("version: 9", "version: 8", PROD), GATE, 1,
         "rotation-plan"),
    Case("version-jump", edit("version: 9", "version: 11", PROD), GATE, 1, "rotation-plan"),
    Case("plan-version-jump", edit("version: 9", "version: 11", PROD), ["plan"], 1,
         "secret/services/execution/session-signing-key"),
    # malformed HCL
    Case("hcl-unclosed-brace", write("policies/acl/auditor.hcl",
                                     b'path "sys/audit" {\n  capabilities = ["read"]\n'),
         GATE, 1, "acl-policies"),
    Case("hcl-not-a-policy", write("policies/acl/auditor.hcl", b"this is = = not hcl\n"),
         GATE, 1, "auditor.hcl"),
    # bad CLI arguments
    Case("cli-no-command", nothing, [], 2, "required"),
    Case("cli-unknown-command", nothing, ["rotate-everything"], 2, "unknown command"),
    Case("cli-drift-no-stack", nothing, ["drift"], 2, "one of the arguments"),
    Case("cli-unknown-stack", nothing, ["drift", "--stack", "qa"], 2, "unknown stack 'qa'"),
    Case("cli-due-bad-now", nothing, ["due", "--stack", "local", "--now", "yesterday"], 2,
         "--now"),
    Case("cli-verify-bad-watch", nothing, ["verify", "--stack", "local", "--watch", "5x"], 2,
         "--watch"),
    Case("cli-kv-put-negative-retries", nothing, ["kv-put", "--path", "x", "--set", "K=HOME",
                                                  "--retries", "-1"], 2, "--retries"),
    Case("cli-kv-put-set-without-equals", nothing, ["kv-put", "--path", "x", "--set", "K"], 2,
         "KEY=ENVVAR"),
    Case("cli-issue-negative-margin", nothing, ["secrets-issue-dynamic", "--role", "r",
                                                "--output", "o.json",
                                                "--refresh-margin", "-5"], 2, "margin"),
    Case("cli-issue-ftp-address", nothing, ["secrets-issue-dynamic", "--role", "r",
                                            "--output", "o.json", "--address", "ftp://x"], 2,
         "http:// or https://"),
    Case("cli-gate-unknown-base", nothing, ["gate", "--base", "no-such-rev"], 2, "no-such-rev"),
    Case("bump-dirty-stack-file", edit("consumers: [analytics]", "consumers: [analytics] # x"),
         ["bump", "--stack", "local", SIGNING], 2, "uncommitted changes"),
    Case("bump-provided-no-value", nothing, ["bump", "--stack", "local", BROKER], 2,
         "--value-stdin"),
    Case("bump-value-env-unset", nothing, ["bump", "--stack", "local", BROKER, "--value-env",
                                           "NO_SUCH_VARIABLE_X"], 2, "is not set"),
    Case("kv-put-stdin-not-an-object", nothing, ["kv-put", "--path", "x", "--stdin-json"], 2,
         "non-empty JSON object", stdin="[1, 2]"),
    # env files with bad lines, non-UTF-8 bytes
    Case("env-line-without-equals", write(BAD_ENV, b"VAULT_TOKEN=x\njust words\n"),
         ["--env-file", BAD_ENV, *DRIFT], 2, "bad.env:2: expected KEY=VALUE"),
    Case("env-unterminated-quote", write(BAD_ENV, b"A='open\n"), ["--env-file", BAD_ENV,
                                                                   *DRIFT], 2,
         "unterminated quote"),
    Case("env-bad-name", write(BAD_ENV, b"1ABC=x\n"), ["--env-file", BAD_ENV, *DRIFT], 2,
         "bad.env:1"),
    Case("env-non-utf8", write(BAD_ENV, b"A=\xff\xfe\n"), ["--env-file", BAD_ENV, *DRIFT], 2,
         "not UTF-8"),
    Case("env-missing", nothing, ["--env-file", "missing.env", *DRIFT], 2, "does not exist"),
    Case("stack-non-utf8", write(LOCAL, b"config:\n  x: \xff\xfe\n"), DRIFT, 2, "not UTF-8"),
    Case("policy-non-utf8", write("policies/acl/auditor.hcl", b'path "\xff" {}\n'), GATE, 1,
         "auditor.hcl"),
]

# Commands that take these flags get --repo and a closed --address.
_REPO_FLAG = {"drift", "due", "verify", "preflight", "record", "bump", "plan", "gate", "kv-put"}
_ADDRESS_FLAG = {"drift", "due", "verify", "preflight", "record", "kv-put",
                 "secrets-issue-dynamic", "revoke"}


def full_argv(case: Case, root: Path, address: str) -> list[str]:
    argv = list(case.argv)
    command = next((a for a in argv if not a.startswith("-") and a != BAD_ENV
                    and not a.endswith(".env")), None)
    extra: list[str] = []
    if command in _REPO_FLAG:
        extra += ["--repo", str(root)]
    if command in _ADDRESS_FLAG and "--address" not in argv:
        extra += ["--address", address]
    return [*argv, *extra]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_is_refused_and_nothing_is_written(
    case: Case, stack_repo: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, refused_url: Callable[[], str],
) -> None:
    monkeypatch.chdir(stack_repo)
    monkeypatch.setenv("VAULT_TOKEN", "not-a-real-token")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    case.setup(stack_repo)
    before = repo_files(stack_repo)
    if case.stdin is not None:
        import io
        monkeypatch.setattr("sys.stdin", io.StringIO(case.stdin))
    argv = full_argv(case, stack_repo, refused_url())
    code = main(argv)
    captured = capsys.readouterr()
    assert code == case.code, f"{argv}: exit {code}\n{captured.out}\n{captured.err}"
    assert case.fragment in captured.out + captured.err, captured.out + captured.err
    assert repo_files(stack_repo) == before, "a refused input changed a file"
    code = main([*argv, "--json"]) if case.argv else main(["--json"])
    out = capsys.readouterr().out
    assert code == case.code
    json.loads(out)  # only JSON on stdout
    assert repo_files(stack_repo) == before


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    print(f"bad inputs: {len(CASES)}")


# ------------------------------------------------------------------ property tests

_scalars = st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(
    allow_nan=False) | st.text(max_size=12)
_yamlish = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                        max_leaves=20)
_REAL_SPEC = yaml.safe_load((REPO_ROOT / LOCAL).read_text())["config"][KEY]


def _mutate(spec: Any, path: list[int], value: Any) -> Any:
    """Replace the node ``path`` (indices into sorted keys / items) leads to with ``value``."""
    doc = copy.deepcopy(spec)
    node, parent, key = doc, None, None
    for step in path:
        if isinstance(node, dict) and node:
            key = sorted(node)[step % len(node)]
        elif isinstance(node, list) and node:
            key = step % len(node)
        else:
            break
        parent, node = node, node[key]
    if parent is None:
        return value
    parent[key] = value
    return doc


@settings(max_examples=100, deadline=None)
@given(data=_yamlish)
def test_spec_loader_on_arbitrary_data_only_raises_spec_error(data: Any) -> None:
    try:
        parse_spec(data, source="Pulumi.fuzz.yaml", stack="local")
    except SpecError as exc:
        assert "Pulumi.fuzz.yaml" in str(exc)


@settings(max_examples=100, deadline=None)
@given(path=st.lists(st.integers(0, 50), min_size=1, max_size=6), value=_yamlish)
def test_spec_loader_on_a_mutated_real_spec_only_raises_spec_error(path: list[int],
                                                                    value: Any) -> None:
    try:
        parse_spec(_mutate(_REAL_SPEC, path, value), source=LOCAL, stack="local")
    except SpecError as exc:
        assert LOCAL in str(exc)


_VERSION_TOKENS = st.one_of(
    st.integers(0, 10**9).map(str),
    st.sampled_from(["0x1F", "+5", "05", "010", "0010", "1_000", "5.0", '"5"', "'5'",
                     "!!int 3", "&v 4",
                     "~", "null", "[1]", "{a: 1}", "1e3", "0o17", "-1", "true", "", "  7",
                     "8 # note", "9 #", "3\n        # a comment line", "|\n          4"]),
)


@pytest.fixture(scope="module")
def bump_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bump-fuzz")
    shutil.copytree(REPO_ROOT / "policies", root / "policies")
    return root


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=_VERSION_TOKENS, reason=st.none() | st.text(max_size=30))
def test_bump_round_trip_changes_only_the_version_or_writes_nothing(
    token: str, reason: str | None, bump_root: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    original = (REPO_ROOT / LOCAL).read_text()
    marker = "    keys: [SIGNING_KEY]\n        version: 1\n"
    assert marker in original
    text = original.replace(marker, f"    keys: [SIGNING_KEY]\n        version: {token}\n", 1)
    try:
        new_text, old, new = bump_version_text(text, SIGNING, LOCAL, reason=reason)
    except BadInput:
        path = bump_root / LOCAL
        path.write_text(text)
        argv = ["bump", "--stack", "local", SIGNING, "--repo", str(bump_root), "--allow-dirty"]
        code = main([*argv, *(["--reason", reason] if reason else [])])
        capsys.readouterr()
        assert code in {0, 2}
        if code == 2:
            assert path.read_text() == text, "a refused bump changed the file"
        return
    assert new == old + 1
    before, after = yaml.safe_load(text), yaml.safe_load(new_text)
    assert after["config"][KEY]["static_secrets"][1]["version"] == new
    after["config"][KEY]["static_secrets"][1]["version"] = old
    assert after == before
    changed = [(a, b) for a, b in zip(text.splitlines(), new_text.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1
    line_before, line_after = changed[0]
    if reason is None:  # only the digits of the version token changed
        assert re.sub(r"\d+", "", line_before) == re.sub(r"\d+", "", line_after)


def test_git_is_available() -> None:
    """The table's version cases diff against HEAD: the fixture repository is a git checkout."""
    assert subprocess.run(["git", "--version"], capture_output=True, check=False).returncode == 0
