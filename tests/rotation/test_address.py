"""One rule for finding Vault, in every command that talks to it.

``--address``, else ``VAULT_ADDR``, else ``BAO_ADDR``, else the stack's
declared ``vault.address``. Each case points every candidate at a different
closed loopback port, runs the command in-process, and reads which address
the "cannot reach Vault" error (exit 3) names and where the hint says it
came from. No server is needed: a refused connection is the observation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rotation import address
from rotation.cli import main
from rotation.errors import BadInput

BROKER_ID = "secret/services/execution/broker-api"

# Every command that talks to Vault, with the arguments it needs to get that far.
COMMANDS = {
    "drift": ["drift", "--stack", "local"],
    "due": ["due", "--stack", "local"],
    "preflight": ["preflight", "--stack", "local", "--skip-lock-check"],
    "verify": ["verify", "--stack", "local", "--secret", BROKER_ID],
    "record": ["record", "--stack", "local", "--secret", BROKER_ID],
    "kv-put": ["kv-put", "--path", "other/x", "--set", "K=HOME", "--stack", "local"],
    "revoke": ["revoke", "--lease-id", "database/creds/r/abc", "--stack", "local"],
    "secrets-issue-dynamic": ["secrets-issue-dynamic", "--role", "r", "--output",
                              "out/creds.json", "--stack", "local"],
}


def test_the_rule_in_order() -> None:
    env = {"VAULT_ADDR": "http://a:1/", "BAO_ADDR": "http://b:1"}
    assert address.resolve("https://flag:1", declared="http://d:1", environ=env) == (
        address.Address("https://flag:1", "--address"))
    assert address.resolve(None, declared="http://d:1", environ=env) == address.Address(
        "http://a:1", "VAULT_ADDR")
    assert address.resolve(None, declared="http://d:1", environ={"BAO_ADDR": "http://b:1"}
                           ).source == "BAO_ADDR"
    found = address.resolve(None, declared="http://d:1", declared_in="Pulumi.prod.yaml",
                            environ={"VAULT_ADDR": " "})
    assert found == address.Address("http://d:1", "Pulumi.prod.yaml vault.address")
    assert not found.overridden
    with pytest.raises(BadInput, match="no Vault address"):
        address.resolve(None, environ={})
    with pytest.raises(BadInput, match=r"from BAO_ADDR\) must start with http"):
        address.resolve(None, environ={"BAO_ADDR": "ftp://x"})
    # Used to be sent, and failed as "cannot reach Vault" (exit 3) as if the network were down.
    with pytest.raises(BadInput, match=r"'http://h:98200' \(from --address\) has a port that "
                                       r"is not a number from 1 to 65535"):
        address.resolve("http://h:98200", environ={})
    with pytest.raises(BadInput, match=r"\(from VAULT_ADDR\) has an IPv6 host without its "
                                       r"closing \]"):
        address.resolve(None, environ={"VAULT_ADDR": "http://[::1:8200"})


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("winner", ["--address", "VAULT_ADDR", "BAO_ADDR", "declared"])
def test_every_command_finds_vault_by_the_same_rule(  # noqa: PLR0917 - pytest fixtures
    command: str, winner: str, stack_repo: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], refused_url: Callable[[], str],
) -> None:
    monkeypatch.chdir(stack_repo)
    monkeypatch.setenv("VAULT_TOKEN", "not-a-real-token")
    for name in ("VAULT_ADDR", "BAO_ADDR", "VAULT_TOKEN_LOCAL"):
        monkeypatch.delenv(name, raising=False)
    candidates = {name: refused_url() for name in ("--address", "VAULT_ADDR", "BAO_ADDR",
                                               "declared")}
    stack_file = stack_repo / "Pulumi.local.yaml"
    text = stack_file.read_text()
    assert "address: http://127.0.0.1:8200" in text
    stack_file.write_text(text.replace("address: http://127.0.0.1:8200",
                                       f"address: {candidates['declared']}", 1))
    order = ["--address", "VAULT_ADDR", "BAO_ADDR", "declared"]
    argv = [*COMMANDS[command], "--repo", str(stack_repo)]
    # Everything after the winner in the order is set too: the winner must beat it.
    for name in order[order.index(winner):]:
        if name == "--address":
            argv += ["--address", candidates[name]]
        elif name != "declared":
            monkeypatch.setenv(name, candidates[name])
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 3, err
    assert f"cannot reach Vault at {candidates[winner]}" in err
    losers = [candidates[n] for n in order if n != winner]
    assert not any(loser in err for loser in losers), err
    source = "Pulumi.local.yaml vault.address" if winner == "declared" else winner
    assert f"the address came from {source}" in err
    assert not (stack_repo / "out").exists()  # a refused run leaves nothing behind


def test_all_refuses_one_override_for_stacks_that_declare_different_vaults(
    stack_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    refused_url: Callable[[], str],
) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "not-a-real-token")
    monkeypatch.setenv("VAULT_ADDR", refused_url())
    code = main(["drift", "--all", "--repo", str(stack_repo)])
    err = capsys.readouterr().err
    assert code == 2
    assert "VAULT_ADDR would send all 4 stacks to one Vault" in err
    assert "unset VAULT_ADDR" in err
