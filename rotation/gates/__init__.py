"""Gates a pull request must pass, as libraries shared by ``python -m rotation gate`` and tests.

* :mod:`rotation.gates.capabilities` - the ACL capability matrix
  (``policies/acl/expectations.yaml``) checked against a real policy engine.
* :mod:`rotation.gates.secret_scan` - no plaintext secret in the tree.
* :mod:`kernel.dr` - the dr stack mirrors prod (mirrors, mounts, policies, roles).
* :mod:`rotation.gates.offline` - every offline check, run in seconds with no Vault.
"""
