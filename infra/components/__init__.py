"""One ``ComponentResource`` per Vault concern; type tokens ``tradepulse:vault:<Concern>``."""

from infra.components.acl_policies import AclPolicies
from infra.components.audit_devices import AuditDevices
from infra.components.database_engine import DatabaseEngine, DatabaseSecrets
from infra.components.jwt_auth import JwtAuth
from infra.components.jwt_issuer_keys import JwtIssuerKeys
from infra.components.kubernetes_auth import KubernetesAuth
from infra.components.kv_engines import KvEngines
from infra.components.provider import vault_provider

__all__ = [
    "AclPolicies",
    "AuditDevices",
    "DatabaseEngine",
    "DatabaseSecrets",
    "JwtAuth",
    "JwtIssuerKeys",
    "KubernetesAuth",
    "KvEngines",
    "vault_provider",
]
