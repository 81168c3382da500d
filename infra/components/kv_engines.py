"""KV version 2 secrets engines with check-and-set and version retention."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_vault as vault

from kernel.naming import resource_name
from kernel.spec.model import KvMount


class KvEngines(pulumi.ComponentResource):
    """Mounts each KV v2 engine and sets CAS, version retention and version expiry."""

    mounts: dict[str, vault.Mount]
    configs: dict[str, vault.kv.SecretBackendV2]

    def __init__(
        self, name: str, mounts: Sequence[KvMount], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tradepulse:vault:KvEngines", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.mounts = {}
        self.configs = {}
        for spec in mounts:
            mount = vault.Mount(
                resource_name("kv", spec.path),
                path=spec.path,
                type="kv",
                options={"version": "2"},
                description=spec.description or None,
                opts=child,
            )
            self.mounts[spec.path] = mount
            self.configs[spec.path] = vault.kv.SecretBackendV2(
                resource_name("kv-config", spec.path),
                mount=mount.path,
                cas_required=spec.cas_required,
                max_versions=spec.max_versions,
                delete_version_after=spec.delete_version_after_seconds,
                opts=child,
            )
        self.paths = pulumi.Output.all(*(m.path for m in self.mounts.values()))
        self.register_outputs({"paths": self.paths})
