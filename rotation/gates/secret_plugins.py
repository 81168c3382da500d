"""detect-secrets plugins for the token formats of this repository's world.

detect-secrets ships detectors for cloud and SaaS keys but none for Vault or
OpenBao tokens, nor for Pulumi access tokens - the two credentials an operator
of this repository is most likely to paste by mistake. They are ordinary
detect-secrets regex plugins, loaded by file path as custom plugins (its CLI
takes them with ``--plugin``; the gate names them in
:data:`rotation.gates.secret_scan.SETTINGS`).
"""

from __future__ import annotations

import re

from detect_secrets.plugins.base import RegexBasedDetector


class VaultTokenDetector(RegexBasedDetector):
    """Vault/OpenBao service, batch and recovery tokens (``hvs.``, ``hvb.``, ``hvr.``, ``s.``).

    Current tokens carry a type prefix and at least 24 characters; legacy
    service tokens are ``s.`` plus exactly 24 alphanumerics. Accessors and
    request ids are not tokens and have other shapes.
    """

    secret_type = "Vault Token"  # noqa: S105 - a detector name, not a secret
    denylist = (
        re.compile(r"\b(hv[sbr]\.[A-Za-z0-9_-]{24,})"),
        re.compile(r"(?<![\w.])(s\.[A-Za-z0-9]{24})(?![\w.])"),
    )


class PulumiAccessTokenDetector(RegexBasedDetector):
    """Pulumi Cloud access tokens: ``pul-`` and 40 hex digits."""

    secret_type = "Pulumi Access Token"  # noqa: S105 - a detector name, not a secret
    denylist = (re.compile(r"\b(pul-[0-9a-f]{40})\b"),)
