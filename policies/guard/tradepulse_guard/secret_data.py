"""KV secret data is a secret: ``kv.SecretV2``'s ``dataJson`` must never reach state in plain text.

What the Python policy API exposes: the analyzer hands a rule the resource's
inputs with secret values already unwrapped (``pulumi_policy`` deserialises
them without their secret marker), so a rule cannot see whether an *input*
was a secret. It does see ``opts.additional_secret_outputs``, the list of
output properties the engine encrypts in state whatever the input was.
pulumi-vault's SDK puts ``data`` and ``dataJson`` there for every
``kv.SecretV2``, and the program also wraps the value in
``pulumi.Output.secret``; a SecretV2 registered any other way (a raw
``CustomResource``, a transformation, an older SDK) loses the marker and fails
this rule. That the value reaches the engine wrapped as a secret is proven
under mocks by tests/infra/test_static_secrets.py.

The rule never reads ``dataJson`` itself: policies see secret values
unwrapped, so it must not print them.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from tradepulse_guard.facts import KV_SECRET, ReportViolation

SECRET_OUTPUTS = ("data", "dataJson")


def kv_secret_data_is_secret(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    """``kv.SecretV2`` lists ``data`` and ``dataJson`` in its additional secret outputs."""
    if args.resource_type != KV_SECRET:
        return
    marked = set(args.opts.additional_secret_outputs or [])
    missing = [p for p in SECRET_OUTPUTS if p not in marked]
    if missing:
        report_violation(f"{args.name}: {', '.join(missing)} not marked secret "
                         "(additional_secret_outputs); the secret's value would be stored in "
                         "state in plain text")


POLICIES = [
    ResourceValidationPolicy(
        name="kv-secret-data-is-secret",
        description="KV v2 secret data (kv.SecretV2 data/dataJson) is a secret output.",
        validate=kv_secret_data_is_secret,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]
