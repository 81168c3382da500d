"""tradepulse-vault's CrossGuard rules: one named validator per rule, all mandatory.

Each module holds one concern, its validator functions (plain functions of
``(args, report_violation)`` plus optional test inputs) and the
``ResourceValidationPolicy``/``StackValidationPolicy`` objects wrapping them.
:data:`POLICIES` is what ``policies/guard/__main__.py`` hands the PolicyPack.
"""

from __future__ import annotations

from pulumi_policy import Policy

from tradepulse_guard import acl, audit, dr_parity, kv, secret_data, ttl

PACK_NAME = "tradepulse-vault-guard"

POLICIES: list[Policy] = [
    *kv.POLICIES,
    *audit.POLICIES,
    *ttl.POLICIES,
    *acl.POLICIES,
    *secret_data.POLICIES,
    *dr_parity.POLICIES,
]
