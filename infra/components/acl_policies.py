"""ACL policies, one ``vault.Policy`` per ``policies/acl/<name>.hcl`` the spec lists."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_vault as vault

from kernel.naming import resource_name


class AclPolicies(pulumi.ComponentResource):
    """Writes each policy's HCL text (read beforehand by :mod:`kernel.policy_files`)."""

    policies: dict[str, vault.Policy]

    def __init__(
        self, name: str, policies: Mapping[str, str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tradepulse:vault:AclPolicies", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.policies = {
            policy_name: vault.Policy(
                resource_name("policy", policy_name), name=policy_name, policy=hcl, opts=child
            )
            for policy_name, hcl in policies.items()
        }
        self.names = pulumi.Output.all(*(p.name for p in self.policies.values()))
        self.register_outputs({"names": self.names})
