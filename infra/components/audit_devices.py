"""Audit devices and audit request headers, in the two server flavours.

* ``vault``: each device is a ``vault.Audit`` created through the API.
* ``openbao``: OpenBao refuses API-created devices, so the component renders
  the server-config stanzas (output ``server_config_hcl``) and, instead of
  creating devices, reads ``sys/audit`` through the provider and fails the
  preview or apply if a declared device is missing or of another type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_vault as vault

from infra.audit_config import render_audit_hcl
from kernel.naming import resource_name
from kernel.spec.model import Audit, AuditDevice, Flavour


class AuditDeviceMissingError(RuntimeError):
    """A device the spec declares is not enabled on the OpenBao server."""


def check_devices_present(
    declared: Sequence[AuditDevice], enabled: Mapping[str, Any], source: str
) -> list[str]:
    """Return the declared paths if ``enabled`` (``sys/audit`` data) has each with its type.

    Raises :class:`AuditDeviceMissingError` naming every missing device and
    what to do about it.
    """
    by_path = {key.rstrip("/"): value for key, value in enabled.items()}
    missing = [
        f"{dev.path} ({dev.type})"
        for dev in declared
        if not isinstance(by_path.get(dev.path), Mapping)
        or by_path[dev.path].get("type") != dev.type
    ]
    if missing:
        raise AuditDeviceMissingError(
            f"{source}: audit devices not enabled on the server: {', '.join(missing)}; "
            "add the stanzas from `python -m infra.audit_config --stack <stack>` to the "
            "OpenBao server config and reload it (SIGHUP)"
        )
    return [dev.path for dev in declared]


class AuditDevices(pulumi.ComponentResource):
    """Declares (Vault) or renders and verifies (OpenBao) the audit devices."""

    devices: dict[str, vault.Audit]
    headers: dict[str, vault.AuditRequestHeader]

    def __init__(
        self,
        name: str,
        spec: Audit,
        flavour: Flavour,
        source: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tradepulse:vault:AuditDevices", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.server_config_hcl = render_audit_hcl(spec.devices)
        self.devices = {}
        if flavour == "vault":
            for dev in spec.devices:
                self.devices[dev.path] = vault.Audit(
                    resource_name("audit", dev.path),
                    path=dev.path,
                    type=dev.type,
                    description=dev.description or None,
                    options=dict(dev.options),
                    opts=child,
                )
            self.paths: pulumi.Output[list[str]] = pulumi.Output.all(
                *(d.path for d in self.devices.values())
            )
        else:
            enabled = vault.generic.get_secret_output(
                path="sys/audit", opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.paths = enabled.data_json.apply(
                lambda raw: check_devices_present(spec.devices, json.loads(raw), source)
            )
        self.headers = {
            header.name: vault.AuditRequestHeader(
                resource_name("audit-header", header.name.lower()),
                name=header.name,
                hmac=header.hmac,
                opts=child,
            )
            for header in spec.request_headers
        }
        self.register_outputs({
            "paths": self.paths,
            "server_config_hcl": self.server_config_hcl,
            "request_headers": [h.name for h in spec.request_headers],
        })
