# auditor: the security reviewer. Lists and reads metadata and configuration,
# never secret data, never writes.

path "secret/metadata/*" {
  capabilities = ["read", "list"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}

path "sys/policies/acl/*" {
  capabilities = ["read"]
}

path "sys/mounts" {
  capabilities = ["read"]
}

path "sys/auth" {
  capabilities = ["read"]
}

path "sys/leases/lookup/*" {
  capabilities = ["list"]
}
