"""Static KV v2 secrets with declarative versions and check-and-set writes.

Each secret declared at ``version: N`` is written with ``cas = N - 1``: Vault
accepts the write only if the live secret is still at N - 1, so an edit made
outside this repository fails the apply instead of being overwritten. A
secret whose version did not change has no diff at all:

* ``generated``: one ``random.RandomPassword`` per key with the version as its
  keeper, so the value is regenerated if and only if the version changes;
* ``provided``: the value is a Pulumi config secret (a JSON object of keys),
  set with ``python -m rotation bump`` / ``pulumi config set --secret``;
* ``mirror`` (dr only): value and version follow prod, read from prod's
  ``dr_mirror`` secret output through a ``pulumi.StackReference``.

A rollback (``restores: M`` beside ``version: N+1``, written by ``python -m
rotation rollback``) writes version N+1 with ``cas = N`` like any rotation,
but its data is version M's, read from Vault's KV history at apply time with
``vault.kv.get_secret_v2(version=M)``: the old value never passes through the
repository. A generated secret's ``RandomPassword`` keeps its state
(``ignore_changes`` on its keeper) so the bump after the rollback regenerates.
Prod's ``dr_mirror`` output carries the restored data, so dr follows.

Overlap (``keep_previous: true``): a bump also writes ``previous: N``, and the
program writes version N+1 with the new value plus version N's keys as
``<KEY>_PREVIOUS`` (read from Vault's history the same way), so verifiers and
slow consumers can read both. ``python -m rotation retire`` writes version
N+2 with ``retired: N+1``: version N+1's keys read back from Vault, without
the previous value (the generated value keeps its state, as in a rollback).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import pulumi
import pulumi_random as random
import pulumi_vault as vault

from kernel.naming import resource_name
from kernel.secret_values import SecretValueError, check_keys, mirror_entry, parse_provided
from kernel.spec.model import PREVIOUS_SUFFIX, Generator, StaticSecret

_ALPHABETS: dict[str, dict[str, Any]] = {
    "alphanumeric": {"special": False},
    "urlsafe": {"special": True, "override_special": "-_"},
    "full": {"special": True},
}


def _secret(value: pulumi.Output[Any]) -> pulumi.Output[Any]:
    """Mark ``value`` secret (typed wrapper: the SDK's own signature defeats mypy)."""
    return pulumi.Output.secret(value)


def _resolved(mapping: Mapping[str, int | pulumi.Output[int]]) -> pulumi.Output[dict[str, int]]:
    """Return one Output of ``mapping`` with its nested Outputs resolved."""
    return pulumi.Output.from_input(cast(dict[str, int], dict(mapping)))


def _mirrored_keys(secret: StaticSecret, data: object) -> list[str]:
    """Return the declared keys plus the ``<KEY>_PREVIOUS`` a keep_previous prod secret has."""
    held = data if isinstance(data, Mapping) else {}
    return [*secret.keys, *(f"{k}{PREVIOUS_SUFFIX}" for k in secret.keys
                            if f"{k}{PREVIOUS_SUFFIX}" in held)]


class StaticSecrets(pulumi.ComponentResource):
    """Writes every declared static secret at its declared version, guarded by CAS."""

    secrets: dict[str, vault.kv.SecretV2]

    def __init__(
        self,
        name: str,
        secrets: Sequence[StaticSecret],
        *,
        provided: Mapping[str, pulumi.Output[str]],
        source: str,
        mirrors: pulumi.Output[Any] | None = None,
        only: Collection[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Register every secret, or with ``only`` just those (a rotation-only program).

        :func:`kernel.targets.rotation_only_secrets` chooses ``only``; ``versions``
        still holds every secret's version, as the stack's outputs must.
        """
        super().__init__("tradepulse:vault:StaticSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secrets = {}
        versions: dict[str, int | pulumi.Output[int]] = {}
        mirror_out: dict[str, pulumi.Output[Any]] = {}
        for secret in secrets:
            if only is not None and secret.id not in only:
                versions[secret.id] = (secret.version if secret.version is not None
                                       else self._mirror(secret, source, mirrors)[1])
                continue
            data, version = self._value(secret, provided, source, mirrors, child)
            versions[secret.id] = version
            # A declared version is a plain int: no Output (and no task) per secret for it.
            cas = version - 1 if isinstance(version, int) else version.apply(lambda v: v - 1)
            kv = vault.kv.SecretV2(
                resource_name("secret", secret.mount, *secret.path.split("/")),
                mount=secret.mount,
                name=secret.path,
                data_json=_secret(data.apply(lambda d: json.dumps(d, sort_keys=True))),
                cas=cas,
                # terraform-provider-vault sends `cas` outside the write's options,
                # where Vault ignores it (hashicorp/terraform-provider-vault#2472);
                # the same value in `options` is what Vault checks.
                options={"cas": str(cas) if isinstance(cas, int) else cas.apply(str)},
                delete_all_versions=False,
                opts=child,
            )
            self.secrets[secret.id] = kv
            if secret.mirror_to_dr:
                mirror_out[secret.id] = pulumi.Output.all(version, data).apply(
                    lambda vd: {"version": vd[0], "data": vd[1]}
                )
        # One Output over the whole mapping (nested Outputs, mirrors' versions, resolve
        # inside it) rather than Output.all of one Output per secret.
        self.versions: pulumi.Output[dict[str, int]] = _resolved(versions)
        self.dr_mirror: pulumi.Output[Any] = _secret(
            pulumi.Output.all(**mirror_out) if mirror_out else pulumi.Output.from_input({})
        )
        self.register_outputs({"versions": self.versions, "dr_mirror": self.dr_mirror})

    def _value(
        self,
        secret: StaticSecret,
        provided: Mapping[str, pulumi.Output[str]],
        source: str,
        mirrors: pulumi.Output[Any] | None,
        child: pulumi.ResourceOptions,
    ) -> tuple[pulumi.Output[dict[str, str]], int | pulumi.Output[int]]:
        if secret.source == "generated":
            assert secret.generator is not None and secret.version is not None
            values = {
                key: self._generate(secret, key, secret.generator, secret.version, child).result
                for key in secret.keys
            }
            if secret.from_history is not None:
                return self._from_history(secret, source, secret.from_history), secret.version
            return self._with_previous(secret, source, pulumi.Output.all(**values)), \
                secret.version
        if secret.source == "provided" and secret.from_history is not None:
            assert secret.version is not None
            return self._from_history(secret, source, secret.from_history), secret.version
        if secret.source == "provided":
            assert secret.config_secret is not None and secret.version is not None
            origin = f"{source}: config {secret.config_secret}"
            raw = provided[secret.config_secret]
            value = raw.apply(lambda r: parse_provided(secret.id, secret.keys, r, origin))
            return self._with_previous(secret, source, value), secret.version
        entry, version = self._mirror(secret, source, mirrors)
        return (entry.apply(lambda e: check_keys(secret.id, _mirrored_keys(secret, e["data"]),
                                                 e["data"], source)), version)

    @staticmethod
    def _mirror(secret: StaticSecret, source: str, mirrors: pulumi.Output[Any] | None,
                ) -> tuple[pulumi.Output[Any], pulumi.Output[int]]:
        """Return mirror ``secret``'s entry in prod's ``dr_mirror`` output and its version."""
        if mirrors is None:
            raise SecretValueError(f"{source}: {secret.id} is a mirror but no prod reference")
        entry = mirrors.apply(lambda m: mirror_entry(secret.id, m, source))
        # The version is not secret (reviewers must see the CAS value in diffs);
        # it only travels inside prod's secret output alongside the value.
        return entry, pulumi.Output.unsecret(entry.apply(lambda e: int(e["version"])))

    def _with_previous(
        self, secret: StaticSecret, source: str, current: pulumi.Output[Any]
    ) -> pulumi.Output[dict[str, str]]:
        """Add version ``previous``'s keys as ``<KEY>_PREVIOUS`` when a previous value is kept."""
        if secret.previous is None:
            return cast(pulumi.Output[dict[str, str]], current)
        kept = self._from_history(secret, source, secret.previous, PREVIOUS_SUFFIX)
        return pulumi.Output.all(current, kept).apply(lambda ck: {**ck[0], **ck[1]})

    def _from_history(
        self, secret: StaticSecret, source: str, version: int, suffix: str = ""
    ) -> pulumi.Output[dict[str, str]]:
        """Return version ``version``'s declared keys (renamed ``<KEY><suffix>``), from Vault.

        Read from Vault's KV history at apply time (a secret Output). Once the
        edit is applied the latest version is the declared one and already
        holds those keys, so it is read instead: version ``version`` may since
        have been pushed out by ``max_versions`` without breaking later
        previews. Before that (or after an out-of-band write, which the CAS
        write then refuses) version ``version`` itself is read.
        """
        opts = pulumi.InvokeOptions(parent=self)
        origin = f"{source}: {secret.id} reads version {version} from Vault's history"
        names = {key: f"{key}{suffix}" for key in secret.keys}

        def pick(latest: Any) -> Any:
            if latest.version == secret.version:
                held = dict(latest.data)
                return _secret(pulumi.Output.from_input(
                    {new: held.get(new) for new in names.values()}))
            old = vault.kv.get_secret_v2_output(mount=secret.mount, name=secret.path,
                                                version=version, opts=opts)
            return _secret(old.apply(lambda r: {new: dict(r.data).get(key)
                                                for key, new in names.items()}))

        latest = vault.kv.get_secret_v2_output(mount=secret.mount, name=secret.path, opts=opts)
        data = _secret(latest.apply(pick))
        return data.apply(lambda d: check_keys(secret.id, list(names.values()), d, origin))

    def _generate(
        self, secret: StaticSecret, key: str, gen: Generator, version: int,
        child: pulumi.ResourceOptions,
    ) -> random.RandomPassword:
        # A rollback keeps the generated value's state (it is not used while the
        # rollback is declared): the next bump's keeper then differs and regenerates.
        opts = (pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
            ignore_changes=["keepers"])) if secret.from_history is not None else child)
        return random.RandomPassword(
            resource_name("value", secret.mount, *secret.path.split("/"), key.lower()),
            length=gen.length,
            keepers={"version": str(version)},
            **_ALPHABETS[gen.alphabet],
            opts=opts,
        )
