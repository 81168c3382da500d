"""kernel.redact: values shown only when plainly not secrets; URLs without credentials."""

from __future__ import annotations

import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.redact import (
    describe,
    display_url,
    has_url_credentials,
    plainly_not_secret,
    scrub_urls,
    shape,
)

TOKEN_48 = secrets.token_urlsafe(36)


@pytest.mark.parametrize("value", [
    "abc", "two", "root-ish", "15m", "012", "10.0", "2026-01-01", "2026-01-01T00:00:00Z",
    "tradepulse-execution", "secret/services/execution/session-signing-key",
    "database/creds/tradepulse-execution/abc", "no-such-rev", "qa", "ac72f038",
])
def test_names_numbers_dates_and_paths_are_shown(value: str) -> None:
    assert plainly_not_secret(value)
    assert describe(value) == repr(value)


@pytest.mark.parametrize("value", [
    # Random values get fixed ids: pytest-xdist's workers must collect the same test ids.
    pytest.param(TOKEN_48, id="random-token-48"),
    pytest.param(secrets.token_urlsafe(16), id="random-token-22"),  # a shorter one
    pytest.param(secrets.token_hex(16), id="random-hex-32"),        # hex key
    "ac72f038" + "b932a978",                # 16 hex digits
    "hvs.short", "s.abc", "pul-abc", "ghp_x", "glpat-x", "xoxb-1", "AKIAABC", "eyJhbGci",
    "-----BEGIN " + "PRIVATE KEY-----",
    "CANARY-misplaced-3f9e61",
    "line one\nline two", "tab\there", "nul\x00", "x" * 65,
])
def test_anything_that_could_be_a_secret_is_described_by_shape(value: str) -> None:
    assert not plainly_not_secret(value)
    shown = describe(value)
    assert value not in shown
    assert shown.startswith("a ") and "-character string" in shown


def test_the_issue_example() -> None:
    assert describe(TOKEN_48) == "a 48-character string"
    assert describe("a\nb") == "a 3-character string of 2 lines"


def test_other_types() -> None:
    assert describe(7) == "7"
    assert describe(12345678901) == "a 11-digit integer"
    assert describe(True) == "True" and describe(None) == "None"
    assert describe(1.5) == "1.5"
    assert describe({"a": TOKEN_48}) == "a mapping with 1 key"
    assert describe([TOKEN_48, 2]) == "a list of 2 items"
    assert shape(b"x") == "a value of type bytes"


@pytest.mark.parametrize(("url", "shown"), [
    pytest.param(f"http://user:{TOKEN_48}@host:8200", "http://host:8200",
                 id="userinfo-random-token"),
    ("https://TOKEN@vault.example:8200/", "https://vault.example:8200/"),
    ("http://h:1/v1/x?token=abc#frag", "http://h:1/v1/x?…"),
    ("https://vault.tradepulse.internal:8200", "https://vault.tradepulse.internal:8200"),
    ("http://[::1]:8200", "http://[::1]:8200"),
    ("s3://bucket/prefix?endpoint=localhost:9000", "s3://bucket/prefix?…"),
])
def test_display_url_drops_userinfo_query_and_fragment(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_a_string_that_is_not_a_url_is_described() -> None:
    assert display_url("vault") == "'vault'"
    assert display_url("http://?0") == "http://?…"
    assert TOKEN_48 not in display_url(TOKEN_48)
    assert describe(f"http://u:{TOKEN_48}@h:1") == "'http://h:1'"


def test_scrub_urls_in_free_text() -> None:
    text = f"cannot reach Vault at http://ops:{TOKEN_48}@127.0.0.1:9 while x (ConnectionError)."
    assert scrub_urls(text) == "cannot reach Vault at http://127.0.0.1:9 while x " \
                               "(ConnectionError)."
    assert scrub_urls(f"(see https://h/p?token={TOKEN_48}), ok") == "(see https://h/p?…), ok"
    assert scrub_urls("no url here") == "no url here"


# What may stand in a URL's userinfo and query (no whitespace, which ends a URL in a text;
# no ? # @ in userinfo, which end it by definition).
_USERINFO = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc", "Zs"),
                                           exclude_characters="?#@"), max_size=30)
_QUERY = st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc", "Zs")),
                 max_size=30)


@settings(max_examples=300, deadline=None)
@given(before=_USERINFO, after=_USERINFO, query=_QUERY, lead=st.sampled_from(["", "(", "'"]))
def test_no_userinfo_or_query_survives_scrubbing(before: str, after: str, query: str,
                                                 lead: str) -> None:
    canary = f"Q{secrets.token_hex(12)}"
    text = f"at {lead}http://{before}{canary}{after}@h:8200/v1?{query}{canary}{query} now"
    scrubbed = scrub_urls(text)
    assert canary not in scrubbed
    assert "h:8200/v1?…" in scrubbed


def test_random_tokens_of_20_characters_or_more_are_never_shown() -> None:
    tokens = [secrets.token_urlsafe(n) for n in range(15, 49) for _ in range(60)]
    tokens += [secrets.token_hex(n) for n in range(5, 33) for _ in range(30)]
    shown = [t for t in tokens if plainly_not_secret(t)]
    assert shown == []
    print(f"random tokens checked: {len(tokens)}")


def test_has_url_credentials_is_the_fast_test_before_scrubbing() -> None:
    assert has_url_credentials('{"a": "http://u:p@h"}')
    assert has_url_credentials('{"a": "http://h/?t=1"}')
    assert not has_url_credentials('{"a": "https://vault.tradepulse.internal:8200", "b": "x@y"}')
    assert not has_url_credentials("no url")
