"""Rules that more than one client applies, stated once.

The offline gate and the CrossGuard pack both hold strict stacks (the spec's
``strict: true``) to them; a rule changed here changes for both.
"""

from __future__ import annotations

# Vault refuses every request once no audit device can log: a strict stack
# needs a second device so one failing device cannot stop it.
MIN_AUDIT_DEVICES = 2
