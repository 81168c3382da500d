# break-glass: emergency administration in prod and dr only. Issued to two
# named people through a sealed procedure; every use is audited and reviewed.
# It is the only policy with sudo, and the one that manages audit devices and
# auth methods (both need sudo in Vault).

path "*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}
