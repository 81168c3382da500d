"""The Pulumi resources a rotation changes, as URNs: what a targeted apply of it names.

A rotation-only push changes a handful of resources in a stack of thousands;
``pulumi up --target <urn> ... --target-dependents`` lets the engine step
only those (and whatever depends on them) instead of diffing every resource
against Vault. The URNs are derived here from the spec with the same naming
helper and component type tokens the program registers them with, so the
plan (:mod:`rotation.planning`) can list them without running the program;
``tests/kernel/test_targets.py`` checks each one against what the program
registers under Pulumi's mocks, and the end-to-end test checks that a
targeted apply leaves a whole-stack ``pulumi preview --expect-no-changes``
clean.

What a rotation touches, per kind (:mod:`kernel.spec.credentials`):

* ``kv`` generated: each key's ``random.RandomPassword`` (its keeper is the
  version, so it is replaced) and the ``kv.SecretV2`` written with the new value;
* ``kv`` provided: the ``kv.SecretV2`` alone (the value is config);
* ``kv`` mirrored (dr): the ``kv.SecretV2`` and the ``StackReference`` to prod,
  which must be read again in a targeted apply or the write would carry
  prod's previous value (with ``--target-dependents`` it brings every mirror);
* every other kind: its ``vault.generic.Endpoint`` rotation action, a child of
  the component that owns the credential.

No pulumi import: data only, like the spec it reads.
"""

from __future__ import annotations

from kernel.naming import resource_name
from kernel.paths import PROJECT_NAME
from kernel.spec.model import EnvironmentSpec

STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
# What infra.program.mirror_source names: self-managed backends (file://, s3://) report
# the organization "organization".
MIRROR_REFERENCE = f"organization/{PROJECT_NAME}/prod"
STATIC_SECRETS_TYPE = "tradepulse:vault:StaticSecrets"
SECRET_V2_TYPE = "vault:kv/secretV2:SecretV2"  # noqa: S105 - a type token, not a secret
RANDOM_PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"  # noqa: S105 - type token
ENDPOINT_TYPE = "vault:generic/endpoint:Endpoint"
# The component each non-KV credential's rotation action is a child of.
ACTION_PARENTS = {
    "jwt-key": "tradepulse:vault:JwtIssuerKeys",
    "db-root": "tradepulse:vault:DatabaseEngine",
    "db-static-role": "tradepulse:vault:DatabaseEngine",
    "db-lease-generation": "tradepulse:vault:DatabaseEngine",
}


class UnknownCredential(ValueError):
    """The credential is not declared in the spec, so no resource can be named for it."""


def urn(stack: str, parent_type: str | None, type_: str, name: str,
        project: str = PROJECT_NAME) -> str:
    """Return the URN Pulumi gives resource ``name`` of ``type_``.

    ``parent_type`` is the type of the component it is a child of (None: a
    direct child of the stack).
    """
    qualified = type_ if parent_type is None else f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def secret_v2_urn(stack: str, mount: str, path: str) -> str:
    """Return the URN of the ``kv.SecretV2`` that writes ``<mount>/<path>``."""
    return urn(stack, STATIC_SECRETS_TYPE, SECRET_V2_TYPE,
               resource_name("secret", mount, *path.split("/")))


def mirror_urns(stack: str, mount: str, path: str) -> list[str]:
    """Return the URNs a new prod version of mirrored secret ``<mount>/<path>`` changes."""
    return [urn(stack, None, STACK_REFERENCE_TYPE, MIRROR_REFERENCE),
            secret_v2_urn(stack, mount, path)]


def kv_urns(spec: EnvironmentSpec, stack: str, secret_id: str) -> list[str]:
    """Return the URNs a new version of static secret ``secret_id`` changes."""
    secret = spec.secret(secret_id)
    if secret is None:
        raise UnknownCredential(f"{spec.source}: no static secret {secret_id}")
    parts = secret.path.split("/")
    out: list[str] = []
    if secret.source == "generated":
        out = [urn(stack, STATIC_SECRETS_TYPE, RANDOM_PASSWORD_TYPE,
                   resource_name("value", secret.mount, *parts, key.lower()))
               for key in secret.keys]
    out.append(secret_v2_urn(stack, secret.mount, secret.path))
    return out


def action_urn(stack: str, kind: str, credential_id: str) -> str:
    """Return the URN of the rotation action of a non-KV credential."""
    if kind not in ACTION_PARENTS:
        raise UnknownCredential(f"no rotation action for credentials of kind {kind!r}")
    return urn(stack, ACTION_PARENTS[kind], ENDPOINT_TYPE,
               resource_name("rotate", kind, *credential_id.split("/")))


def rotation_urns(spec: EnvironmentSpec, stack: str, kind: str, credential_id: str) -> list[str]:
    """Return the URNs a rotation of ``credential_id`` (of ``kind``) in ``stack`` changes."""
    if kind == "kv":
        return kv_urns(spec, stack, credential_id)
    return [action_urn(stack, kind, credential_id)]


# Set (to the space-separated URNs of a targeted apply) only by the tools that also pass
# those URNs as ``--target``: tools/targeted_apply.py and the deploy workflow.
ROTATION_ONLY_ENV = "TRADEPULSE_ROTATION_ONLY"
# The static secrets whose resources have no dependents outside the secret.
ROTATION_ONLY_SOURCES = ("generated", "provided")


def rotation_only_secrets(spec: EnvironmentSpec, stack: str, urns: list[str]) -> list[str] | None:
    """Return the static secrets a rotation-only program registers for ``urns``, or None.

    A targeted apply of a KV rotation touches a few resources, but the whole
    program still evaluates and registers every resource of the stack (19,000
    on a 1,000-service fleet), and the engine walks each one. The program can
    instead register only the secrets whose resources ``urns`` names: under
    ``--target`` the engine keeps every resource the program did not register.
    That is safe only when every URN is a generated or provided secret's (their
    resources have no dependents outside the secret) and ``--target-dependents``
    is not passed (it would name resources the program did not register, and
    the engine would delete them). Anything else (a mirror's StackReference, a
    rotation action, an unknown URN) returns None: the whole program runs.

    Prod's ``dr_mirror`` output carries every mirrored secret's value, so the
    secrets mirrored to dr are registered too (unchanged: the engine steps
    over them).
    """
    owner: dict[str, str] = {}
    for secret in spec.static_secrets:
        if secret.source in ROTATION_ONLY_SOURCES:
            owner.update(dict.fromkeys(kv_urns(spec, stack, secret.id), secret.id))
    if not urns or any(u not in owner for u in urns):
        return None
    chosen = {owner[u] for u in urns}
    return [s.id for s in spec.static_secrets if s.id in chosen or s.mirror_to_dr]
