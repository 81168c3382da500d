"""What the rules know about the stack under preview: its spec, read from stack config.

The Pulumi engine hands a policy pack the stack's configuration, so the pack
reads the same ``tradepulse-vault:spec`` the program deploys and validates it
with the same loader. Environment, flavour, TTL caps and declared audit
devices all come from there, and so does whether the stack is held to the
production rules (the spec's ``strict``): nothing is keyed on a stack's name.

How the config arrives depends on the engine: older CLIs set ``PULUMI_CONFIG``
in the pack's environment, which ``pulumi_policy`` loads into
``pulumi.Config`` by itself; current CLIs (3.2xx) send it in the analyzer's
``ConfigureStack`` call instead, which ``pulumi_policy`` 1.21 receives but
drops (it keeps only the stack tags). :func:`install_stack_config_hook`, called
by ``__main__.py``, makes that call load the config too.

A rule that needs the spec and cannot read it reports a violation (it never
passes silently). Rules take the spec as an optional argument so tests can
hand them one directly.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from kernel import paths
from kernel.spec import EnvironmentSpec, SpecError, load_stack_file, parse_spec

ReportViolation = Callable[..., None]

# The one policy allowed sudo and catch-all paths (policies/acl/break-glass.hcl).
BREAK_GLASS_POLICY = "break-glass"
# KV v2 versions kept in prod/dr at least (policy config `min_max_versions` may raise it).
MIN_MAX_VERSIONS = 10

# Resource types (Pulumi type tokens) the rules look at.
KV_BACKEND = "vault:kv/secretBackendV2:SecretBackendV2"
KV_SECRET = "vault:kv/secretV2:SecretV2"  # noqa: S105 - a type token
MOUNT = "vault:index/mount:Mount"
AUDIT = "vault:index/audit:Audit"
AUDIT_COMPONENT = "tradepulse:vault:AuditDevices"
ACL_POLICY = "vault:index/policy:Policy"
DATABASE_ROLE = "vault:database/secretBackendRole:SecretBackendRole"
AUTH_ROLES = frozenset({
    "vault:kubernetes/authBackendRole:AuthBackendRole",
    "vault:jwt/authBackendRole:AuthBackendRole",
    "vault:appRole/authBackendRole:AuthBackendRole",
})


class SpecUnavailableError(RuntimeError):
    """The stack's spec could not be read or does not validate."""


@functools.lru_cache(maxsize=4)
def _parse(raw_json: str) -> EnvironmentSpec:
    data = json.loads(raw_json)
    environment = data.get("environment") if isinstance(data, dict) else None
    return parse_spec(data, source=f"Pulumi.{environment}.yaml")


def stack_spec() -> EnvironmentSpec:
    """Return the validated spec of the stack being previewed (from its config)."""
    import pulumi

    raw: Any = pulumi.Config(paths.PROJECT_NAME).get_object("spec")
    if raw is None:
        raise SpecUnavailableError(
            f"the stack config has no {paths.SPEC_CONFIG_KEY}: run the pack with "
            "`pulumi preview --policy-pack policies/guard` on a tradepulse-vault stack")
    try:
        return _parse(json.dumps(raw, sort_keys=True))
    except SpecError as exc:
        first = str(exc).splitlines()[0]
        raise SpecUnavailableError(f"the stack's spec does not validate: {first}") from None


def resolve_spec(spec: EnvironmentSpec | None,
                 report_violation: ReportViolation) -> EnvironmentSpec | None:
    """Return ``spec`` or the stack's; on failure report it as a violation and return None."""
    if spec is not None:
        return spec
    try:
        return stack_spec()
    except SpecUnavailableError as exc:
        report_violation(f"cannot check: {exc}")
        return None


def apply_stack_configuration(request: Any) -> None:
    """Load an ``AnalyzerStackConfigureRequest``'s config into ``pulumi.Config``."""
    import pulumi

    for key, value in dict(request.config).items():
        pulumi.runtime.set_config(key, value)


def install_stack_config_hook() -> None:
    """Make ``pulumi_policy``'s ``ConfigureStack`` also load the stack config it is sent.

    Fails at pack start (never silently) if ``pulumi_policy`` no longer has the
    servicer method this wraps.
    """
    from pulumi_policy import policy as policy_module

    servicer = getattr(policy_module, "_PolicyAnalyzerServicer", None)
    original = getattr(servicer, "ConfigureStack", None)
    if servicer is None or original is None:
        raise RuntimeError("pulumi_policy has no _PolicyAnalyzerServicer.ConfigureStack: the "
                           "pack cannot receive the stack config; update "
                           "tradepulse_guard.facts.install_stack_config_hook")
    if getattr(original, "_tradepulse_hook", False):
        return

    def configure_stack(self: Any, request: Any, context: Any) -> Any:
        apply_stack_configuration(request)
        return original(self, request, context)

    configure_stack._tradepulse_hook = True  # type: ignore[attr-defined]
    servicer.ConfigureStack = configure_stack


def prod_spec() -> EnvironmentSpec:
    """Return the spec of ``Pulumi.prod.yaml`` in this repository (for the dr comparison)."""
    try:
        return load_stack_file(paths.stack_file("prod"))
    except SpecError as exc:
        raise SpecUnavailableError(f"Pulumi.prod.yaml does not validate: "
                                   f"{str(exc).splitlines()[0]}") from None


def as_int(value: object) -> int | None:
    """Return ``value`` as an int if it is one (TTLs arrive as numbers), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
