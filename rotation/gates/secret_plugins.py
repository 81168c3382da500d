"""detect-secrets plugins for the token formats of this repository's world.

detect-secrets ships detectors for cloud and SaaS keys but none for Vault or
OpenBao tokens, nor for Pulumi access tokens - the two credentials an operator
of this repository is most likely to paste by mistake. They are ordinary
detect-secrets regex plugins (usable as custom plugins of its CLI too); the
gate runs them with the other pattern detectors
(:func:`rotation.gates.secret_scan.scan_patterns`).
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


# What the heuristic detectors can possibly report on a line: the keyword
# detector needs one of its denylist words (detect_secrets.plugins.keyword
# DENYLIST); an entropy detector needs a string whose Shannon entropy exceeds
# its limit, and a string of n characters has at most log2(n) bits, so base64
# (limit 4.5) needs at least 23 characters of its alphabet and hex (limit 3.0)
# more than 8 hex digits. Runs of 20 and 8 leave a margin.
_KEYWORDS = (
    r"api_?key|auth_?key|service_?key|account_?key|db_?key|database_?key|priv_?key|"
    r"private_?key|client_?key|db_?pass|database_?pass|key_?pass|password|passwd|pwd|"
    r"secret|contrase(?:ñ|n)a"
)
_POSSIBLY_SECRET = re.compile(rf"(?i:{_KEYWORDS})|[A-Za-z0-9+/\\=_-]{{20,}}|[0-9a-fA-F]{{8,}}")


def is_quiet_line(line: str) -> bool:
    """detect-secrets filter: True (skip the line) when no heuristic detector could fire on it.

    detect-secrets runs every line through every plugin and filter; most lines
    of code cannot hold anything its entropy or keyword detectors look for,
    and skipping them first makes the scan several times faster without
    changing what it finds.
    """
    return _POSSIBLY_SECRET.search(line) is None


# The entropy detectors (detect_secrets.plugins.high_entropy_strings) in a file scan only
# look at quoted strings of their charset (base64: letters, digits and "+/\-_="; hex is a
# subset), and need more than 8 characters to exceed their entropy limits (see above).
_QUOTED_RUN = re.compile(r"""(['"])[A-Za-z0-9+/\\=_-]{8,}\1""")


def is_quiet_for_entropy(line: str) -> bool:
    """detect-secrets filter: True (skip the line) when no entropy detector could fire on it.

    For the raw-text pass of YAML files (:func:`rotation.gates.secret_scan.detect`),
    which runs the entropy detectors only: a line with no quoted run of 8 or
    more base64 characters holds no string they could report.
    """
    return _QUOTED_RUN.search(line) is None
