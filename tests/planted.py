"""Values tests plant for the secret scan, generated at run time so no file holds one."""

from __future__ import annotations

import base64
import secrets

from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

from rotation.gates import secret_scan


def high_entropy_base64() -> str:
    """A random base64 value the gate's entropy detector reports, drawn until it is one.

    About 1 draw in 300 of 33 random bytes has a Shannon entropy under the gate's
    limit (CI drew one at 4.43 against 4.5): the detector is right not to report
    it, so a test that expects a finding must not plant one.
    """
    limit = next(plugin["limit"] for plugin in secret_scan.SETTINGS["plugins_used"]
                 if plugin["name"] == "Base64HighEntropyString")
    while True:
        value = base64.b64encode(secrets.token_bytes(33)).decode()
        if Base64HighEntropyString().calculate_shannon_entropy(value) > limit + 0.1:
            return value


def word_initial_token(nbytes: int) -> str:
    """``secrets.token_urlsafe(nbytes)`` drawn until it begins with a letter or digit.

    One draw in 64 begins with ``-``: argparse and git then read the value as an
    option (CI saw ``git grep`` exit 129 on such a canary), and detect-secrets'
    keyword detector does not report ``password: -...`` (its value pattern must
    begin with a word character). A test that means "some value" must not plant one.
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0].isalnum():
            return value
