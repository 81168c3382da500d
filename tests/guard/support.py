"""Shared by the CrossGuard rule tests: real pulumi_policy argument objects and the real specs."""

from __future__ import annotations

from typing import Any

import yaml
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
)
from tradepulse_guard import facts

from kernel import paths
from kernel.spec import EnvironmentSpec, load_stack_file

K8S_ROLE = "vault:kubernetes/authBackendRole:AuthBackendRole"
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
SDK_SECRET_OUTPUTS = ["data", "dataJson", "dataJsonWo"]  # what pulumi-vault's SDK registers


class Violations(list[tuple[str, str | None]]):
    """A ``report_violation`` that remembers what it was told."""

    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))

    @property
    def messages(self) -> list[str]:
        return [m for m, _ in self]


def spec(stack: str) -> EnvironmentSpec:
    return load_stack_file(paths.stack_file(stack))


def options(secret_outputs: list[str] | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(secret_outputs or []), parent=None)


def urn(typ: str, name: str) -> str:
    return f"urn:pulumi:prod::tradepulse-vault::{typ}::{name}"


def resource(typ: str, name: str, props: dict[str, Any], *,
             secret_outputs: list[str] | None = None,
             config: dict[str, Any] | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(typ, props, urn(typ, name), name, options(secret_outputs),
                                  None, config)


def stack_resource(typ: str, name: str, props: dict[str, Any],
                   dependencies: list[PolicyResource] | None = None) -> PolicyResource:
    return PolicyResource(typ, props, urn(typ, name), name, options(), None, None,
                          list(dependencies or []), {})


def kv_config(cas: object = True, versions: object = 20) -> dict[str, Any]:
    return {"mount": "secret", "casRequired": cas, "maxVersions": versions,
            "deleteVersionAfter": 0}


def audit_device(path: str, typ: str = "file") -> PolicyResource:
    return stack_resource(facts.AUDIT, f"audit-{path}", {"path": path, "type": typ})


def db_role(max_ttl: object, default_ttl: object = 3600) -> ResourceValidationArgs:
    return resource(facts.DATABASE_ROLE, "database-role-tradepulse-execution",
                    {"name": "tradepulse-execution", "maxTtl": max_ttl,
                     "defaultTtl": default_ttl})


def raw_spec(stack: str) -> Any:
    return yaml.safe_load(paths.stack_file(stack).read_text())["config"][paths.SPEC_CONFIG_KEY]
