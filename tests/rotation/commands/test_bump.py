"""``bump``: a one-line, byte-exact edit of the stack file; refusals leave it untouched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from rotation.cli import main
from rotation.stackedit import bump_version_text

SIGNING = "secret/services/execution/session-signing-key"
BROKER = "secret/services/execution/broker-api"
CANARY = "CANARY-bump-value-51d0c2"


def diff_lines(root: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(root), "diff", "-U0"], capture_output=True,
                         text=True, check=True).stdout
    return [line for line in out.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_bump_changes_exactly_one_line(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    code = main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)])
    assert code == 0
    after = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    assert diff_lines(stack_repo) == ["-        version: 9", "+        version: 10"]
    old_lines, new_lines = before.splitlines(), after.splitlines()
    assert len(old_lines) == len(new_lines)
    changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b]
    assert len(changed) == 1
    assert "9 -> 10" in capsys.readouterr().out


def test_bump_with_reason_keeps_comments_elsewhere(stack_repo: Path) -> None:
    assert main(["bump", "--stack", "staging", SIGNING, "--repo", str(stack_repo),
                 "--reason", "quarterly rotation; INC-1234"]) == 0
    assert diff_lines(stack_repo) == [
        "-        version: 5", "+        version: 6 # quarterly rotation; INC-1234"]


def test_bump_json_output(stack_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bump", "--json", "--stack", "local", SIGNING, "--repo", str(stack_repo)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["old_version"] == 1 and payload["new_version"] == 2 and payload["cas"] == 1
    assert payload["consumers"] == ["execution"]


def test_bump_text_edit_preserves_every_other_byte_of_a_commented_file() -> None:
    text = (
        "# top comment\n"
        "config:\n"
        "  tradepulse-vault:spec:   # odd spacing kept\n"
        "    static_secrets:\n"
        "      - {mount: secret, path: a/b, keys: [K], version: 3, source: generated,"
        " rotation_interval_seconds: 3600, consumers: []}  # flow style\n"
        "      - mount: secret\n"
        "        path: c/d\n"
        "        keys: [ 'K' ]\n"
        "        version:    41   # trailing comment\n"
        "        source: generated\n"
        "    other: 'quoted'   \n"
    )
    new, old, newv = bump_version_text(text, "secret/c/d", "Pulumi.x.yaml")
    assert (old, newv) == (41, 42)
    assert new == text.replace("version:    41", "version:    42")
    new2, _, _ = bump_version_text(text, "secret/a/b", "Pulumi.x.yaml")
    assert new2 == text.replace("version: 3,", "version: 4,")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--stack", "prod", "secret/services/nope"], "unknown secret 'secret/services/nope'"),
    (["--stack", "nope", SIGNING], "unknown stack 'nope'"),
    (["--stack", "dr", SIGNING], "is mirror_of prod"),
    (["--stack", "prod", BROKER], "is a provided secret: give its new value"),
    (["--stack", "prod", SIGNING, "--value-env", "X"], "takes no value"),
])
def test_bump_refusals_leave_the_file_untouched(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    before = {p.name: p.read_bytes() for p in stack_repo.glob("Pulumi.*.yaml")}
    assert main(["bump", *argv, "--repo", str(stack_repo)]) == 2
    assert fragment in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in stack_repo.glob("Pulumi.*.yaml")} == before


def test_bump_refuses_a_dirty_stack_file(stack_repo: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_repo / "Pulumi.prod.yaml"
    path.write_text(path.read_text() + "# local edit\n")
    dirty = path.read_bytes()
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo)]) == 2
    assert "uncommitted changes" in capsys.readouterr().err
    assert path.read_bytes() == dirty
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 0


def test_bump_refuses_an_unparsable_stack_file(stack_repo: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_repo / "Pulumi.prod.yaml"
    path.write_text("config: [unclosed\n")
    broken = path.read_bytes()
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 2
    assert "Pulumi.prod.yaml" in capsys.readouterr().err
    assert path.read_bytes() == broken


def test_provided_bump_without_pulumi_cli_refuses_and_writes_nothing(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no pulumi here
    monkeypatch.setenv("NEW_BROKER", json.dumps({"API_KEY": CANARY, "API_SECRET": CANARY}))
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    code = main(["bump", "--stack", "prod", BROKER, "--repo", str(stack_repo),
                 "--value-env", "NEW_BROKER"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no Pulumi CLI" in captured.err
    assert CANARY not in captured.out + captured.err
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == before


@pytest.mark.parametrize(("value", "fragment"), [
    (json.dumps({"API_KEY": CANARY}), "has keys ['API_KEY']"),
    (CANARY, "give a JSON object with exactly those keys"),
    ("{" + CANARY, "looks like JSON but does not parse"),
])
def test_provided_bump_rejects_bad_values_without_echoing_them(
    stack_repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    value: str, fragment: str,
) -> None:
    monkeypatch.setenv("NEW_BROKER", value)
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    code = main(["bump", "--json", "--stack", "prod", BROKER, "--repo", str(stack_repo),
                 "--value-env", "NEW_BROKER"])
    captured = capsys.readouterr()
    assert code == 2
    assert fragment in captured.err
    assert CANARY not in captured.out + captured.err
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == before


def test_a_second_bump_of_the_same_secret_is_refused_even_with_allow_dirty(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo), "--reason", "q1"]
    assert main(argv) == 0
    bumped = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    capsys.readouterr()
    assert main([*argv[:-1], "second", "--allow-dirty"]) == 2
    err = capsys.readouterr().err
    assert f"{SIGNING} is already bumped in the working tree (version 9 -> 10" in err
    assert "--allow-dirty allows other uncommitted edits" in err
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == bumped  # 10 and "q1" kept
    # Another secret in the same file is still a batch bump.
    assert main(["bump", "--stack", "prod", "secret/services/analytics/warehouse-hmac",
                 "--repo", str(stack_repo), "--allow-dirty"]) == 0
    assert sorted(diff_lines(stack_repo)) == sorted([
        "-        version: 9", "+        version: 10 # q1",
        "-        version: 2", "+        version: 3"])


def test_value_stdin_at_a_terminal_prompts_without_echo(stack_repo: Path) -> None:
    import os

    from tests.rotation.terminal_support import run_on_terminal

    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no pulumi: stops right after the read
    argv = ["bump", "--stack", "prod", BROKER, "--repo", str(stack_repo), "--value-stdin"]
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    prompt = f"New value for {BROKER} (a JSON object with keys API_KEY, API_SECRET"
    code, screen = run_on_terminal(argv, env=env, cwd=stack_repo, prompt="input hidden",
                                   answer=f"{CANARY}\n")
    assert prompt in screen, screen
    assert CANARY not in screen  # not echoed, not repeated in the error
    assert code == 2 and "give a JSON object with exactly those keys" in screen
    value = json.dumps({"API_KEY": CANARY, "API_SECRET": CANARY})
    code, screen = run_on_terminal(argv, env=env, cwd=stack_repo, prompt="input hidden",
                                   answer=f"{value}\n")
    assert CANARY not in screen
    assert code == 2 and "no Pulumi CLI" in screen  # the value was read and accepted
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == before


def test_a_duplicate_key_is_named_with_both_lines(stack_repo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = stack_repo / "Pulumi.prod.yaml"
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == "version: 9")
    lines.insert(at + 1, lines[at])
    path.write_text("".join(lines))
    before = path.read_bytes()
    assert main(["bump", "--stack", "prod", SIGNING, "--repo", str(stack_repo),
                 "--allow-dirty"]) == 2
    err = capsys.readouterr().err
    assert ".version: duplicate key (first at line " \
           f"{at + 1}); YAML would keep only the last (line {at + 2})" in err
    assert err.startswith("error: Pulumi.prod.yaml: tradepulse-vault:spec.static_secrets[")
    assert path.read_bytes() == before


def test_a_credential_version_not_written_in_the_file_is_declared_first(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """prod's JWT key has no `version:` line (the loader reads 1): bump names what to add."""
    before = (stack_repo / "Pulumi.prod.yaml").read_bytes()
    code = main(["bump", "--stack", "prod", "identity/oidc/key/tradepulse-adapters",
                 "--repo", str(stack_repo)])
    captured = capsys.readouterr()
    assert code == 2
    assert ("Pulumi.prod.yaml: tradepulse-vault:spec.jwt_issuer_keys[0].version is missing"
            in captured.err)
    assert "`version: 1`" in captured.err and "Traceback" not in captured.err
    assert (stack_repo / "Pulumi.prod.yaml").read_bytes() == before


def test_a_credential_bump_changes_one_line_and_says_what_the_apply_does(
    stack_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stack_repo / "Pulumi.local.yaml"
    before = path.read_text()
    code = main(["bump", "--json", "--stack", "local", "database/roles/tradepulse-analytics",
                 "--repo", str(stack_repo), "--reason", "INC-77 leaked analytics creds"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (payload["kind"], payload["field"], payload["old_version"],
            payload["new_version"]) == ("db-lease-generation", "lease_generation", 1, 2)
    assert "sys/leases/revoke-prefix/database/creds/tradepulse-analytics" in payload["apply"]
    assert payload["consumers"] == ["analytics"]
    diff = [(a, b) for a, b in zip(before.splitlines(), path.read_text().splitlines(),
                                   strict=True) if a != b]
    assert diff == [("          lease_generation: 1",
                     "          lease_generation: 2 # INC-77 leaked analytics creds")]
