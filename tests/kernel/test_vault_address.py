"""``address_problem``: addresses no HTTP client can use are bad input, not an outage."""

from __future__ import annotations

import secrets

import pytest

from kernel.vault_address import BAD_PORT, address_problem

USABLE = ["http://127.0.0.1:8200", "https://vault.tradepulse.internal", "http://[::1]:8200",
          "https://ops@vault:8200/", "http://h:1", "http://h:65535"]
UNUSABLE = [
    ("ftp://vault:8200", "must start with http:// or https://"),
    ("vault:8200", "must start with http:// or https://"),
    ("http://vault :8200", "must not contain blanks"),
    ("http://[::1:8200", "has an IPv6 host without its closing ]"),
    ("http://vault:99999", BAD_PORT),
    ("http://vault:0", BAD_PORT),
    ("http://vault:82OO", BAD_PORT),
    ("http://", "names no host"),
    ("https://:8200", "names no host"),
]


@pytest.mark.parametrize("url", USABLE)
def test_usable_addresses_pass(url: str) -> None:
    assert address_problem(url) is None


@pytest.mark.parametrize(("url", "problem"), UNUSABLE, ids=[u for u, _ in UNUSABLE])
def test_each_unusable_address_says_why_without_repeating_it(url: str, problem: str) -> None:
    assert address_problem(url) == problem
    canary = f"tp-canary-{secrets.token_hex(8)}"  # made when the test runs
    found = address_problem(url.replace("//", f"//ops:{canary}@", 1))
    assert found is not None and canary not in found
