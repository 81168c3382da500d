"""The spec loader: the four stacks load; each bad spec names the file and key path."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel import paths
from kernel.spec import SpecError, load_stack_file, parse_spec
from tests.conftest import STACKS, MockRun
from tests.infra.test_program import SECRET_KEYS, run_main, stack_config


def prod_spec() -> dict[str, Any]:
    doc = yaml.safe_load(paths.stack_file("prod").read_text())
    return copy.deepcopy(doc["config"][paths.SPEC_CONFIG_KEY])


def write_stack(tmp: Path, spec: dict[str, Any], stack: str = "prod") -> Path:
    path = tmp / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": {paths.SPEC_CONFIG_KEY: spec}}))
    return path


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_loads(stack: str) -> None:
    spec = load_stack_file(paths.stack_file(stack))
    assert spec.environment == stack
    assert spec.source == f"Pulumi.{stack}.yaml"


Mutation = Callable[[dict[str, Any]], None]


def _set(path: list[str | int], value: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        node: Any = spec
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return mutate


def _delete(path: list[str | int]) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        node: Any = spec
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return mutate


BAD_SPECS: list[tuple[str, Mutation, str, str]] = [
    ("unknown top-level key", _set(["colour"], "blue"),
     "tradepulse-vault:spec.colour", "unknown key"),
    ("unknown nested key", _set(["kv_mounts", 0, "cas"], True),
     "tradepulse-vault:spec.kv_mounts[0].cas", "unknown key"),
    ("wrong type", _set(["kv_mounts", 0, "max_versions"], "twenty"),
     "tradepulse-vault:spec.kv_mounts[0].max_versions", "is not of type 'integer'"),
    ("wrong type bool", _set(["kv_mounts", 0, "cas_required"], "yes"),
     "tradepulse-vault:spec.kv_mounts[0].cas_required", "is not of type 'boolean'"),
    ("TTL below range", _set(["database", "roles", 0, "default_ttl_seconds"], 5),
     "tradepulse-vault:spec.database.roles[0].default_ttl_seconds", "out of range"),
    ("TTL above range", _set(["services", 1, "token_max_ttl_seconds"], 99_999_999),
     "tradepulse-vault:spec.services[1].token_max_ttl_seconds", "out of range"),
    ("TTL above the environment cap", _set(["database", "roles", 2, "max_ttl_seconds"], 172800),
     "tradepulse-vault:spec.database.roles[2].max_ttl_seconds",
     "exceeds limits.max_database_ttl_seconds (86400)"),
    ("default TTL above max TTL", _set(["services", 0, "token_ttl_seconds"], 20000),
     "tradepulse-vault:spec.services[0].token_ttl_seconds",
     "exceeds token_max_ttl_seconds (14400)"),
    ("policy with no HCL file", _set(["policies", 2], "tradepulse-quant"),
     "tradepulse-vault:spec.policies[2]", "no HCL file acl/tradepulse-quant.hcl"),
    ("service role naming an unknown policy", _set(["services", 0, "policies"], ["root-ish"]),
     "tradepulse-vault:spec.services[0].policies[0]", "unknown policy 'root-ish'"),
    ("CI role naming an unknown policy",
     _set(["auth", "jwt", "roles", 1, "policies"], ["ci-preview", "admin"]),
     "tradepulse-vault:spec.auth.jwt.roles[1].policies[1]", "unknown policy 'admin'"),
    ("service naming an unknown database role",
     _set(["services", 2, "database_roles"], ["tradepulse-quant"]),
     "tradepulse-vault:spec.services[2].database_roles[0]", "unknown database role"),
    ("missing required key", _delete(["audit"]),
     "tradepulse-vault:spec.audit", "required key is missing"),
    ("file audit device without file_path", _delete(["audit", "devices", 0, "options",
                                                     "file_path"]),
     "tradepulse-vault:spec.audit.devices[0].options.file_path", "required key is missing"),
    ("environment differs from the stack", _set(["environment"], "staging"),
     "tradepulse-vault:spec.environment", "does not match stack 'prod'"),
    ("bad flavour", _set(["vault", "flavour"], "hashicorp"),
     "tradepulse-vault:spec.vault.flavour", "is not one of"),
    ("two JWT key sources", _set(["auth", "jwt", "jwks_url"], "https://example.test/jwks"),
     "tradepulse-vault:spec.auth.jwt", "set exactly one of"),
    ("duplicate service", lambda s: s["services"].append(copy.deepcopy(s["services"][0])),
     "tradepulse-vault:spec.services", "duplicate service name 'execution'"),
    ("duplicate mount path", _set(["database", "mount"], "secret"),
     "tradepulse-vault:spec.kv_mounts", "mount path 'secret' is declared twice"),
    ("consumer whose policy cannot read the secret",
     _set(["static_secrets", 0, "consumers"], ["analytics"]),
     "tradepulse-vault:spec.static_secrets[0].consumers[0]",
     "service 'analytics' cannot read secret/data/services/execution/broker-api"),
    ("unknown consumer", _set(["static_secrets", 1, "consumers"], ["quant"]),
     "tradepulse-vault:spec.static_secrets[1].consumers[0]", "unknown service 'quant'"),
    ("provided secret without config_secret", _delete(["static_secrets", 0, "config_secret"]),
     "tradepulse-vault:spec.static_secrets[0].config_secret", "required key is missing"),
    ("secret on an undeclared mount", _set(["static_secrets", 3, "mount"], "kv"),
     "tradepulse-vault:spec.static_secrets[3].mount", "is not a kv_mounts path"),
    ("mirror_of outside dr", _set(["static_secrets", 1], {
        "mount": "secret", "path": "services/execution/x", "keys": ["A"], "mirror_of": "prod",
        "consumers": ["execution"]}),
     "tradepulse-vault:spec.static_secrets[1].mirror_of", "only the dr stack holds mirrors"),
    ("owned secret without a version", _delete(["static_secrets", 2, "version"]),
     "tradepulse-vault:spec.static_secrets[2]", "set version, source and rotation_interval"),
    ("mirror that sets its own version", _set(["static_secrets", 1], {
        "mount": "secret", "path": "services/execution/x", "keys": ["A"], "mirror_of": "prod",
        "version": 3, "consumers": ["execution"]}),
     "tradepulse-vault:spec.static_secrets[1].version",
     "not allowed together with mirror_of"),
    ("service both in and outside Kubernetes",
     _set(["services", 0, "outside_cluster"], {"host": "batch-01"}),
     "tradepulse-vault:spec.services[0].kubernetes", "not allowed together with outside_cluster"),
    ("CI role with neither branch nor pull_requests",
     _delete(["auth", "jwt", "roles", 0, "branch"]),
     "tradepulse-vault:spec.auth.jwt.roles[0]", "set branch"),
    ("CI role with both branch and pull_requests",
     _set(["auth", "jwt", "roles", 1, "branch"], "main"),
     "tradepulse-vault:spec.auth.jwt.roles[1].branch",
     "not allowed together with pull_requests"),
    ("CI role environment with a glob", _set(["auth", "jwt", "roles", 0,
                                              "deployment_environment"], "prod*"),
     "tradepulse-vault:spec.auth.jwt.roles[0].deployment_environment", "does not match"),
    ("version zero", _set(["static_secrets", 2, "version"], 0),
     "tradepulse-vault:spec.static_secrets[2].version", "out of range"),
    ("rollback restoring the version it replaces", _set(["static_secrets", 1, "restores"], 8),
     "tradepulse-vault:spec.static_secrets[1].restores", "restores 8 must be lower than 8"),
    ("mirror that restores a version", _set(["static_secrets", 1], {
        "mount": "secret", "path": "services/execution/x", "keys": ["A"], "mirror_of": "prod",
        "restores": 3, "consumers": ["execution"]}),
     "tradepulse-vault:spec.static_secrets[1].restores",
     "not allowed together with mirror_of"),
    ("static role with a period and a schedule",
     _set(["database", "static_roles"], [{
         "name": "ledger-batch", "username": "ledger_batch", "rotation_period_seconds": 86400,
         "rotation_schedule": "0 3 * * SAT", "rotation_statements": ["ALTER ROLE"],
         "version": 1, "consumers": []}]),
     "tradepulse-vault:spec.database.static_roles[0]",
     "set exactly one of rotation_period_seconds, rotation_schedule"),
    ("delivery with a context and a render_dir",
     _set(["delivery", "kubernetes", "render_dir"], "build/manifests"),
     "tradepulse-vault:spec.delivery.kubernetes", "set exactly one of context, render_dir"),
    ("CI role with pull_requests: false", _set(["auth", "jwt", "roles", 1, "pull_requests"],
                                               False),
     "tradepulse-vault:spec.auth.jwt.roles[1].pull_requests", "False is not True"),
    ("a policy listed twice", _set(["services", 0, "policies"], ["execution", "execution"]),
     "tradepulse-vault:spec.services[0].policies", "has repeated items"),
    ("a quoted version", _set(["static_secrets", 2, "version"], "3"),
     "tradepulse-vault:spec.static_secrets[2].version", "'3' is not of type 'integer'"),
    ("duplicate secret", lambda s: s["static_secrets"].append(
        copy.deepcopy(s["static_secrets"][0])),
     "tradepulse-vault:spec.static_secrets",
     "secret 'secret/services/execution/broker-api' is declared twice"),
]


@pytest.mark.parametrize(("mutate", "key_path", "fragment"),
                         [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_names_file_and_key_path(
    tmp_path: Path, mutate: Mutation, key_path: str, fragment: str
) -> None:
    spec = prod_spec()
    mutate(spec)
    path = write_stack(tmp_path, spec)
    with pytest.raises(SpecError) as info:
        load_stack_file(path)
    lines = str(info.value).splitlines()
    wanted = f"Pulumi.prod.yaml: {key_path}: "
    matching = [line for line in lines if line.startswith(wanted) and fragment in line]
    assert matching, f"no line starts with {wanted!r} and has {fragment!r}: {lines}"


@pytest.mark.parametrize(("mutate", "key_path", "fragment"),
                         [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS])
def test_bad_spec_registers_nothing(
    pulumi_mocks: Callable[..., MockRun], mutate: Mutation, key_path: str, fragment: str
) -> None:
    spec = prod_spec()
    mutate(spec)
    config = stack_config("prod")
    config[paths.SPEC_CONFIG_KEY] = json.dumps(spec)
    run = pulumi_mocks("prod", config, SECRET_KEYS)
    with pytest.raises(SpecError) as info:
        run_main()
    assert f"Pulumi.prod.yaml: {key_path}: " in str(info.value)
    assert run.mocks.resources == [], "a bad spec must fail before any resource is registered"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    spec = prod_spec()
    spec["colour"] = "blue"
    spec["kv_mounts"][0]["max_versions"] = 0
    with pytest.raises(SpecError) as info:
        load_stack_file(write_stack(tmp_path, spec))
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(("text", "fragment"), [
    ("config: {tradepulse-vault:spec: [unclosed\n", "line 2"),
    ("- just a list\n", "no `config:` mapping"),
    ("config:\n  other: 1\n", "tradepulse-vault:spec: required key is missing"),
])
def test_unparsable_stack_file_names_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_stack_file(path)
    assert str(info.value).startswith("Pulumi.prod.yaml: ")
    assert fragment in str(info.value)


def test_non_utf8_stack_file(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_bytes(b"config:\n  x: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"Pulumi.prod.yaml: .*not UTF-8"):
        load_stack_file(path)


def test_missing_stack_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"Pulumi\.nope\.yaml: .*does not exist"):
        load_stack_file(tmp_path / "Pulumi.nope.yaml")


def test_spec_error_is_raised_for_no_spec_in_config(pulumi_mocks: Callable[..., MockRun]) -> None:
    run = pulumi_mocks("prod", {}, [])
    with pytest.raises(SpecError, match=r"Pulumi\.prod\.yaml: tradepulse-vault:spec: required"):
        run_main()
    assert run.mocks.resources == []


def test_parse_spec_is_usable_without_a_file() -> None:
    spec = parse_spec(prod_spec(), source="inline")
    assert spec.source == "inline"
    assert [m.path for m in spec.kv_mounts] == ["secret"]


def test_an_explicit_null_is_not_one_of_the_alternatives() -> None:
    """``jwks_url: null`` beside the key source in use is an absent key, not a second source."""
    data = prod_spec()
    jwt = data["auth"]["jwt"]
    unused = [k for k in ("oidc_discovery_url", "jwks_url") if k not in jwt]
    assert unused, "prod's JWT auth uses every URL key source"
    for key in unused:
        jwt[key] = None
    spec = parse_spec(data, source="inline")
    assert spec.auth.jwt is not None
    assert all(getattr(spec.auth.jwt, key) is None for key in unused)
    data["delivery"]["kubernetes"]["render_dir"] = None
    data["delivery"]["kubernetes"].pop("context")
    with pytest.raises(SpecError, match=r"delivery\.kubernetes: set exactly one of context, "
                                        r"render_dir"):
        parse_spec(data, source="inline")



# A token pasted into the wrong line of a stack file: every schema rule that can catch it
# names the file and key path and says what the value looks like, never what it is.
TOKEN = "hvs." + secrets.token_urlsafe(33)  # 48 characters, made when the tests run
HEX_KEY = "f" + secrets.token_hex(16)[1:]  # a name must start with a letter
MISPLACED: list[tuple[str, Mutation, str, str]] = [
    ("version (type)", _set(["static_secrets", 0, "version"], TOKEN),
     "static_secrets[0].version", "a 48-character string is not of type 'integer'"),
    ("vault address (pattern)", _set(["vault", "address"], TOKEN),
     "vault.address", "a 48-character string does not match"),
    ("flavour (enum)", _set(["vault", "flavour"], TOKEN), "vault.flavour",
     "a 48-character string is not one of 'vault', 'openbao'"),
    ("policy name (pattern)", _set(["services", 0, "policies", 0], TOKEN),
     "services[0].policies[0]", "a 48-character string does not match"),
    ("a key", lambda s: s["limits"].update({TOKEN: 1}),
     "limits.<48-character key>", "unknown key"),
    ("a number", _set(["limits", "max_token_ttl_seconds"], 84736251904837),
     "limits.max_token_ttl_seconds", "a 14-digit integer is out of range"),
    ("a list", _set(["kv_mounts", 0, "path"], [TOKEN]), "kv_mounts[0].path",
     "a list of 1 item is not of type 'string'"),
    ("address with credentials", _set(["vault", "address"], f"http://ops:{TOKEN}@h:8200/x"),
     "vault.address", "'http://h:8200/x' does not match"),
    ("an unusable port, with credentials", _set(["vault", "address"],
                                                 f"http://ops:{TOKEN}@h:98200"),
     "vault.address", "'http://h:98200' has a port that is not a number from 1 to 65535"),
    ("an unclosed IPv6 host", _set(["vault", "address"], "https://[fd00::1:8200"),
     "vault.address", "'https://[fd00::1:8200' has an IPv6 host without its closing ]"),
    ("an unknown policy that is a hex key", _set(["services", 0, "policies", 0], HEX_KEY),
     "services[0].policies[0]", "unknown policy a 32-character string"),
]


@pytest.mark.parametrize(("label", "mutate", "key_path", "says"), MISPLACED,
                         ids=[m[0] for m in MISPLACED])
def test_a_misplaced_value_is_described_by_its_shape(
    label: str, mutate: Mutation, key_path: str, says: str, tmp_path: Path
) -> None:
    spec = prod_spec()
    mutate(spec)
    with pytest.raises(SpecError) as caught:
        load_stack_file(write_stack(tmp_path, spec))
    message = str(caught.value)
    assert f"Pulumi.prod.yaml: tradepulse-vault:spec.{key_path}: {says}" in message, message
    assert TOKEN not in message and HEX_KEY not in message
    assert "84736251904837" not in message
