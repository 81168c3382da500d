"""The one place resource names are derived, so URNs are predictable.

Pulumi logical names are ``<concern>-<vault name>``; they never embed the
environment because each stack has its own namespace already.
"""

from __future__ import annotations


def resource_name(concern: str, *parts: str) -> str:
    """Return the Pulumi logical name for a resource of ``concern`` named by ``parts``."""
    return "-".join((concern, *parts))


def kubernetes_role_name(service: str) -> str:
    """Return the Kubernetes auth role of a service (the Vault role a workload logs in with)."""
    return service


def database_creds_path(mount: str, role: str) -> str:
    """Return the path a workload reads dynamic credentials from."""
    return f"{mount}/creds/{role}"


def static_creds_path(mount: str, role: str) -> str:
    """Return the path a database static role's current password is read from."""
    return f"{mount}/static-creds/{role}"
