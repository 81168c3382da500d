"""Repository tooling: the local environment (make up/down) and the Pulumi toolchain build."""
