"""What a usable Vault address is, for the stack files and the rotation commands alike.

A shape check (``http(s)://`` and no blanks) lets through addresses that no
HTTP client can use: an unclosed IPv6 bracket, a port above 65535, no host.
Those used to reach the first request and come back as "cannot reach Vault"
(exit 3), as if the network were at fault; here they are bad input, named
where they came from. The stdlib's URL splitter is what decides.
"""

from __future__ import annotations

from urllib.parse import urlsplit

BAD_PORT = "has a port that is not a number from 1 to 65535"


def address_problem(url: str) -> str | None:
    """Return why ``url`` is not a usable Vault address (None: it is one).

    The reason never repeats the address (it may carry credentials).
    """
    if not url.startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(c.isspace() for c in url):
        return "must not contain blanks"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # its text may quote the address: only its kind is kept
        if "IPv6" in str(exc):
            return "has an IPv6 host without its closing ]"
        return BAD_PORT
    if not parts.hostname:
        return "names no host"
    return BAD_PORT if port == 0 else None
