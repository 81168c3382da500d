# tradepulse-execution: the execution service reads only its own secrets.
# Least privilege: its KV subtree, its own dynamic and static database credentials,
# and renewal/lookup of its own token and leases.

path "secret/data/services/execution" {
  capabilities = ["read"]
}

path "secret/data/services/execution/*" {
  capabilities = ["read"]
}

path "database/creds/tradepulse-execution" {
  capabilities = ["read"]
}

# The legacy settlement connector's fixed database user (a static role).
path "database/static-creds/execution-settlement" {
  capabilities = ["read"]
}

path "sys/leases/renew" {
  capabilities = ["update"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
