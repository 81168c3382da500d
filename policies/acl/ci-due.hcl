# ci-due: the scheduled rotation-due workflow (.github/workflows/rotation-due.yml)
# running `python -m rotation bump --due`. It decides what is past its rotation
# interval from Vault's own records, then edits the stack file; the pull request
# it opens is what rotates, through review and the deploy role. So it reads when
# each credential last rotated and nothing else: no secret data, no credentials,
# no writes (it does not even create a child token: it runs no Pulumi).

# KV v2 metadata of the service secrets (current_version and its created_time).
path "secret/metadata/services/*" {
  capabilities = ["read"]
}

# A database static role's last_vault_rotation (the role's settings, never its password).
path "database/static-roles/*" {
  capabilities = ["read"]
}
