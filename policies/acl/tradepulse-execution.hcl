# tradepulse-execution: the execution service reads only its own secrets.
# Least privilege: its KV subtree, its own dynamic database credentials,
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

path "sys/leases/renew" {
  capabilities = ["update"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}

path "auth/token/lookup-self" {
  capabilities = ["read"]
}
