"""The kernel: what the Pulumi program, the rotation CLI and the policy pack share.

The spec model and loader, reading a stack file once, naming, paths, atomic
writes, HCL policy reading, and the rules more than one client applies (DR
parity, the audit-device minimum). It imports neither ``pulumi`` nor ``hvac``,
and none of ``infra``, ``rotation`` or ``tradepulse_guard``: they import it,
never each other (``tests/kernel/test_boundaries.py`` walks the imports).
"""
