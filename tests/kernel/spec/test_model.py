"""Lookups on the spec model: by id and by name, as a scan in declaration order finds them."""

from __future__ import annotations

import pytest

from kernel import paths
from kernel.spec import load_stack_file
from tests.conftest import STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_lookups_agree_with_a_scan(stack: str) -> None:
    spec = load_stack_file(paths.stack_file(stack))
    assert spec.static_secrets and spec.services
    for secret in spec.static_secrets:
        assert spec.secret(secret.id) is next(s for s in spec.static_secrets if s.id == secret.id)
    for service in spec.services:
        assert spec.service(service.name) is service
    assert spec.secret("secret/no/such/secret") is None
    assert spec.service("no-such-service") is None


def test_services_named_keep_declaration_order_once_each_and_drop_unknown_names() -> None:
    spec = load_stack_file(paths.stack_file("prod"))
    names = [s.name for s in spec.services]
    asked = [*reversed(names), names[0], "no-such-service"]
    assert [s.name for s in spec.services_named(asked)] == names
    assert spec.services_named([]) == []
