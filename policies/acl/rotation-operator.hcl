# rotation-operator: the on-call SRE (or the CI apply role) rotating secrets.
# Writes service secrets with check-and-set and reads their metadata; issues,
# renews, lists and revokes database leases. No sudo, no sys/audit, no policies.

path "secret/data/services/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/services/*" {
  capabilities = ["read", "list"]
}

path "database/creds/*" {
  capabilities = ["read"]
}

# A static role's reviewed rotation (pulumi up writes rotate-role). The root
# credential, JWT issuer keys and revoking a role's leases stay with break-glass.
path "database/rotate-role/*" {
  capabilities = ["update"]
}

# verify and due read when a static role last rotated (never its password).
path "database/static-roles/*" {
  capabilities = ["read"]
}

path "sys/leases/renew" {
  capabilities = ["update"]
}

path "sys/leases/revoke" {
  capabilities = ["update"]
}

path "sys/leases/lookup" {
  capabilities = ["update"]
}

path "sys/leases/lookup/database/creds/*" {
  capabilities = ["list"]
}

path "sys/capabilities-self" {
  capabilities = ["update"]
}

path "sys/mounts" {
  capabilities = ["read"]
}

# The Vault provider (pulumi up) starts by creating a short-lived child token;
# a child token can only carry a subset of this token's own policies.
path "auth/token/create" {
  capabilities = ["update"]
}
