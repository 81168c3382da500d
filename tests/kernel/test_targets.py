"""The URNs a rotation's targeted apply names are the URNs the program registers.

Each stack's spec has every credential bumped to version 2 (so the non-KV
rotation actions exist), the program runs under Pulumi's mocks, and every
URN :mod:`kernel.targets` derives must be one the monitor saw registered.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kernel import paths
from kernel.spec import EnvironmentSpec, parse_spec
from kernel.spec.credentials import credentials
from kernel.targets import (
    RANDOM_PASSWORD_TYPE,
    SECRET_V2_TYPE,
    UnknownCredential,
    action_urn,
    kv_urns,
    mirror_urns,
    rotation_only_secrets,
    rotation_urns,
    secret_v2_urn,
    urn,
)
from tests.conftest import STACKS, MockRun
from tests.infra.test_program import evaluate


def bumped_spec(stack: str) -> EnvironmentSpec:
    """The stack's spec with every credential of every kind at version 2."""
    path = paths.stack_file(stack)
    data = copy.deepcopy(yaml.safe_load(path.read_text())["config"][paths.SPEC_CONFIG_KEY])
    base = parse_spec(data, source=path.name, stack=stack)
    for cred in credentials(base):
        holder: Any = data
        for key in cred.where:
            holder = holder[key]
        holder[cred.field] = cred.version + 1
    return parse_spec(data, source=path.name, stack=stack)


@pytest.mark.parametrize("stack", STACKS)
def test_every_rotation_urn_is_registered_by_the_program(stack: str, pulumi_mocks: Any) -> None:
    spec = bumped_spec(stack)
    run: MockRun = pulumi_mocks(stack)
    evaluate(run, spec)
    registered = set(run.urns)
    creds = credentials(spec)
    kinds = {c.kind for c in creds}
    assert kinds >= {"kv", "jwt-key", "db-root", "db-lease-generation"}
    assert stack != "local" or "db-static-role" in kinds
    for cred in creds:
        wanted = rotation_urns(spec, stack, cred.kind, cred.id)
        assert wanted, cred.id
        missing = [u for u in wanted if u not in registered]
        assert not missing, f"{stack} {cred.id}: not registered: {missing}"
    for secret in spec.static_secrets:
        if secret.mirror_of:  # dr: no version of its own, but prod's rotation names it
            reference, write = mirror_urns(stack, secret.mount, secret.path)
            assert write in registered
            # A read resource: the mocks see it, the mock monitor does not list it.
            read = {urn(stack, None, r.typ, r.name) for r in run.mocks.resources
                    if r.typ == "pulumi:pulumi:StackReference"}
            assert read == {reference}


def test_a_generated_secret_names_its_passwords_and_its_write() -> None:
    spec = bumped_spec("local")
    [generated] = [s for s in spec.static_secrets if s.source == "generated"][:1]
    got = rotation_urns(spec, "local", "kv", generated.id)
    types = [u.split("::")[2].rsplit("$", 1)[1] for u in got]
    assert types == [RANDOM_PASSWORD_TYPE] * len(generated.keys) + [SECRET_V2_TYPE]
    provided = next(s for s in spec.static_secrets if s.source == "provided")
    assert rotation_urns(spec, "local", "kv", provided.id) == [
        secret_v2_urn("local", provided.mount, provided.path)]


def test_an_undeclared_credential_is_refused() -> None:
    spec = bumped_spec("local")
    with pytest.raises(UnknownCredential, match="no static secret secret/nope"):
        rotation_urns(spec, "local", "kv", "secret/nope")
    with pytest.raises(UnknownCredential, match="kind 'bogus'"):
        rotation_urns(spec, "local", "bogus", "x")


def test_urn_shape() -> None:
    assert urn("prod", None, "pulumi:providers:vault", "vault") == (
        "urn:pulumi:prod::tradepulse-vault::pulumi:providers:vault::vault")


def test_a_rotation_only_program_registers_the_rotated_secrets_and_what_dr_mirrors() -> None:
    spec = bumped_spec("prod")
    rotated = next(s for s in spec.static_secrets if s.source == "generated"
                   and not s.mirror_to_dr)
    mirrored = [s.id for s in spec.static_secrets if s.mirror_to_dr]
    assert mirrored, "prod mirrors secrets to dr (the dr_mirror output needs their values)"
    chosen = rotation_only_secrets(spec, "prod", kv_urns(spec, "prod", rotated.id))
    assert chosen is not None
    assert set(chosen) == {rotated.id, *mirrored}
    assert len(chosen) < len(spec.static_secrets)


def test_anything_but_a_generated_or_provided_secret_runs_the_whole_program() -> None:
    """A mirror's StackReference, a rotation action, an unknown URN: the whole program."""
    dr = bumped_spec("dr")
    mirror = next(s for s in dr.static_secrets if s.mirror_of is not None)
    assert rotation_only_secrets(dr, "dr", mirror_urns(dr, mirror.mount, mirror.path)) is None
    assert rotation_only_secrets(dr, "dr", [secret_v2_urn("dr", mirror.mount, mirror.path)]) \
        is None
    prod = bumped_spec("prod")
    secret = next(s for s in prod.static_secrets if s.source == "provided")
    urns = kv_urns(prod, "prod", secret.id)
    assert rotation_only_secrets(prod, "prod", urns) is not None
    action = next(c for c in credentials(prod) if c.kind == "jwt-key")
    assert rotation_only_secrets(prod, "prod", [*urns, action_urn("prod", action.kind,
                                                                  action.id)]) is None
    assert rotation_only_secrets(prod, "prod", [*urns, urns[0] + "-typo"]) is None
    assert rotation_only_secrets(prod, "staging", urns) is None, "another stack's URNs"
    assert rotation_only_secrets(prod, "prod", []) is None
