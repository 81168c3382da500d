"""KV v2 in strict stacks: check-and-set required, enough versions kept, no mount without config.

Rotations rely on check-and-set (the program writes version N with
``cas = N-1``); a mount without ``cas_required`` would also accept writes
from anyone without it. ``max_versions`` is the history a rollback or an
investigation can use.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from kernel.spec import EnvironmentSpec
from tradepulse_guard.facts import (
    KV_BACKEND,
    MIN_MAX_VERSIONS,
    MOUNT,
    ReportViolation,
    as_int,
    resolve_spec,
)


def version_floor(config: Any) -> int:
    """Return the ``max_versions`` floor: the default, or higher if the policy config says so."""
    configured = as_int(config.get("min_max_versions")) if config else None
    return max(MIN_MAX_VERSIONS, configured or 0)


def kv_v2_cas_and_version_floor(
    args: ResourceValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None,
) -> None:
    """KV v2 config in strict stacks: ``cas_required`` true, ``max_versions`` >= the floor."""
    if args.resource_type != KV_BACKEND:
        return
    spec = resolve_spec(spec, report_violation)
    if spec is None or not spec.strict:
        return
    if args.props.get("casRequired") is not True:
        report_violation(f"{args.name}: cas_required must be true in {spec.environment} "
                         "(rotations write with check-and-set)")
    floor = version_floor(args.get_config())
    kept = as_int(args.props.get("maxVersions"))
    if kept is None or kept < floor:
        shown = "unset" if kept is None else str(kept)
        report_violation(f"{args.name}: max_versions is {shown}; {spec.environment} keeps at "
                         f"least {floor} versions")


def _is_kv_v2(props: Any) -> bool:
    options = props.get("options") or {}
    return props.get("type") == "kv-v2" or (
        props.get("type") == "kv" and str(options.get("version")) == "2")


def kv_v2_mounts_have_cas_config(
    args: StackValidationArgs, report_violation: ReportViolation,
    spec: EnvironmentSpec | None = None,
) -> None:
    """Every KV v2 mount in strict stacks has its ``SecretBackendV2`` config (else CAS is off)."""
    spec = resolve_spec(spec, report_violation)
    if spec is None or not spec.strict:
        return
    configs = [r for r in args.resources if r.resource_type == KV_BACKEND]
    configured_paths = {r.props.get("mount") for r in configs}
    configured_urns = {d.urn for r in configs for d in r.dependencies}
    for mount in (r for r in args.resources if r.resource_type == MOUNT):
        if not _is_kv_v2(mount.props):
            continue
        if mount.urn in configured_urns or mount.props.get("path") in configured_paths:
            continue
        report_violation(f"{mount.name}: KV v2 mount {mount.props.get('path')!r} has no "
                         "kv.SecretBackendV2 config, so cas_required and max_versions are "
                         "Vault's defaults (off, 10)", mount.urn)


POLICIES = [
    ResourceValidationPolicy(
        name="kv-v2-cas-and-version-floor",
        description="KV v2 mounts in strict stacks require check-and-set and keep at least "
                    f"{MIN_MAX_VERSIONS} versions.",
        validate=kv_v2_cas_and_version_floor,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PolicyConfigSchema(properties={
            "min_max_versions": {"type": "integer", "minimum": MIN_MAX_VERSIONS},
        }),
    ),
    StackValidationPolicy(
        name="kv-v2-mounts-have-cas-config",
        description="Every KV v2 mount in strict stacks is configured by a kv.SecretBackendV2.",
        validate=kv_v2_mounts_have_cas_config,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
