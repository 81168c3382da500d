# ci-preview: pull-request pipelines running `pulumi preview`. Reads the
# configuration Pulumi refreshes; never secret data, never writes.

path "sys/mounts" {
  capabilities = ["read"]
}

path "sys/mounts/*" {
  capabilities = ["read"]
}

path "sys/auth" {
  capabilities = ["read"]
}

path "sys/policies/acl/*" {
  capabilities = ["read"]
}

path "secret/metadata/*" {
  capabilities = ["read", "list"]
}

path "secret/config" {
  capabilities = ["read"]
}

path "auth/+/role/*" {
  capabilities = ["read"]
}

path "auth/+/config" {
  capabilities = ["read"]
}

path "database/roles/*" {
  capabilities = ["read"]
}

path "identity/oidc/key/*" {
  capabilities = ["read"]
}

path "auth/token/create" {
  capabilities = ["update"]
}
