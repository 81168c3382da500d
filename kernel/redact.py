"""Say what a value looks like without repeating it: the one redaction helper.

A message about bad input must name the file and field and say what is wrong,
but the value it is about may be a token pasted into the wrong line of a
stack file, a password typed where a path was expected, or credentials inside
an address. Such a message is then printed into every CI log. So the spec
loader, the offline gate and every rotation command show a value only when
it is *plainly not a secret*, and otherwise describe its shape ("a
48-character string").

Plainly not a secret is the secret scan's test (``rotation.gates.secret_scan``
runs detect-secrets' entropy detectors over quoted strings and its pattern
detectors for known token formats): a value is shown only when it is short
(at most :data:`MAX_SHOWN` characters, one line, printable), has low entropy
and carries no known token prefix (:data:`TOKEN_PREFIXES`). Low entropy is
judged like detect-secrets does, per run of base64 or hex characters: a hex
run of more than :data:`HEX_RUN` characters must stay at or below
:data:`HEX_LIMIT` bits a character (the scan's limit) and hold no digit (so
a long number or a hex key is never shown, a word like ``deadbeefcafe`` is),
and a base64 run of :data:`BASE64_RUN` or more characters must stay at or
below :data:`BASE64_LIMIT` (the scan's is 4.5) and be made of words - each
piece between ``-``, ``/``, ``_`` or ``.`` letters of one case followed by
digits (``execution``, ``v2``, ``SEC``, ``42``). That is stricter
than the scan on purpose: a message can afford to hide a name the gate could
not afford to fail on, and a random 22-character token can fall under 4.5
bits but is never made of words. A shorter base64 run cannot reach either
limit (n characters hold at most log2(n) bits), so short words, numbers of
up to eight digits, dates and durations are always shown; so are identifiers like
``secret/services/execution/session-signing-key``.

URLs are shown without their userinfo, query string and fragment
(:func:`display_url`): ``http://{user}:{password}@host:8200`` and
``...?token=...`` are how credentials travel inside an address.
:func:`scrub_urls` does the same to every URL inside a free text, for the
CLI's output boundary.

This module is part of the kernel: it imports neither pulumi nor hvac, and
nothing but the standard library, so the Pulumi program, the CrossGuard pack
and the rotation CLI all use it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

MAX_SHOWN = 64
# See the module docstring: runs shorter than these cannot exceed the limits.
BASE64_RUN = 20
BASE64_LIMIT = 4.0
HEX_RUN = 8
HEX_LIMIT = 3.0
# Known token formats (detect-secrets' pattern plugins the gate runs, and ours for Vault,
# OpenBao and Pulumi): most are long enough to be caught by the run rule anyway; the
# prefix catches a token cut short or split by punctuation.
TOKEN_PREFIXES = (
    "hvs.", "hvb.", "hvr.", "s.", "b.", "r.", "pul-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_",
    "github_pat_", "glpat-", "xox", "sk_live_", "rk_live_", "sk-", "akia", "asia", "npm_",
    "pypi-", "eyj", "-----begin",
)
_BASE64_RUN = re.compile(rf"[A-Za-z0-9+/\\=_-]{{{BASE64_RUN},}}")
_HEX_RUN = re.compile(rf"[0-9a-fA-F]{{{HEX_RUN + 1},}}")
_SEPARATORS = re.compile(r"[-/_.+=\\]+")
_WORD = re.compile(r"[a-z]*[0-9]*|[A-Z]*[0-9]*")
_WORD_BREAK = re.compile(r"[^a-z0-9._+-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_URL_EXTRAS = re.compile(r"://[^\s\"]*[@?#]")
_TRAILING = ".,:;!)]}'\"`>"


def entropy(text: str) -> float:
    """Return the Shannon entropy of ``text``, bits a character (detect-secrets' formula)."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _made_of_words(run: str) -> bool:
    return all(_WORD.fullmatch(piece) for piece in _SEPARATORS.split(run))


def plainly_not_secret(text: str) -> bool:
    """Return True when ``text`` cannot be a secret by the secret scan's test (see above)."""
    if not text or len(text) > MAX_SHOWN:
        return not text
    if any(not c.isprintable() or (c.isspace() and c != " ") for c in text):
        return False
    if any(entropy(run) > BASE64_LIMIT or not _made_of_words(run)
           for run in _BASE64_RUN.findall(text)):
        return False
    if any(entropy(run) > HEX_LIMIT or any(c.isdigit() for c in run)
           for run in _HEX_RUN.findall(text)):
        return False
    lowered = text.lower()
    return not any(word.startswith(TOKEN_PREFIXES) for word in _WORD_BREAK.split(lowered))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shape(value: object) -> str:  # noqa: PLR0911 - one return per kind of value reads best
    """Return what ``value`` looks like, never what it is: ``a 48-character string``."""
    if isinstance(value, str):
        lines = value.count("\n") + 1
        return f"a {len(value)}-character string" + (f" of {lines} lines" if lines > 1 else "")
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return f"a {len(str(abs(value)))}-digit integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, Mapping):
        return f"a mapping with {_plural(len(value), 'key')}"
    if isinstance(value, list | tuple):
        return f"a list of {_plural(len(value), 'item')}"
    return f"a value of type {type(value).__name__}"


def describe(value: object) -> str:
    """Return ``repr(value)`` when it is plainly not a secret, else its :func:`shape`.

    For messages: ``f"{describe(value)} is not of type 'integer'"`` reads
    ``'abc' is not of type 'integer'`` or ``a 48-character string is not of
    type 'integer'``. A URL is shown without its credentials (:func:`scrub_urls`).
    Mappings and lists are always described by shape (their items could be
    anything).
    """
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        shown = scrub_urls(value)  # an address is shown without its credentials
        return repr(shown) if plainly_not_secret(shown) else shape(value)
    if isinstance(value, int | float):
        return repr(value) if plainly_not_secret(repr(value)) else shape(value)
    return shape(value)


def _authority_cut(url: str) -> tuple[str, str, str]:
    """Split ``scheme://rest`` into (scheme://host, path, query-or-empty), dropping userinfo.

    Everything up to the last ``@`` before the query goes, even past a ``/``: an
    unencoded ``/`` in a password must not let the rest of it through.
    """
    scheme, _, rest = url.partition("://")
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    rest = rest[rest.rfind("@", 0, query_at) + 1:]
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    return f"{scheme}://", rest[:query_at], rest[query_at:]


def display_url(url: str) -> str:
    """Return ``url`` without userinfo, query string and fragment (for messages, logs, records).

    ``http://{user}:{password}@vault:8200/?token=x`` becomes ``http://vault:8200/?…``. A
    string that is not ``scheme://...`` is described by :func:`describe`.
    """
    if not _SCHEME.match(url):
        return repr(url) if plainly_not_secret(url) else shape(url)
    base, path, rest = _authority_cut(url)
    return base + path + ("?…" if rest.startswith("?") else "")


def _scrub_match(match: re.Match[str]) -> str:
    url = match.group(0)
    # Sentence punctuation after a URL is not part of it, and holds nothing.
    core = url.rstrip(_TRAILING)
    return display_url(core) + url[len(core):]


def has_url_credentials(text: str) -> bool:
    """Return whether ``text`` may hold a URL with userinfo, a query or a fragment.

    A fast test (one regex search, no callback) for large outputs: only when
    it says yes is the output rebuilt through :func:`scrub_urls`.
    """
    return "://" in text and _URL_EXTRAS.search(text) is not None


def scrub_urls(text: str) -> str:
    """Return ``text`` with every URL in it passed through :func:`display_url`."""
    if "://" not in text:
        return text
    return _URL.sub(_scrub_match, text)
