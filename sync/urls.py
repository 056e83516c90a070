"""Which URLs a credential may travel to: https anywhere, plain http to this computer only.

One rule for every client that sends a token or password (the Dataverse client, the setup
forms' checks): the host is compared exactly, as parsed, because a prefix test lets
`http://127.0.0.1.evil.example/` (or `http://localhost@evil.example/`) through to the network
in clear text. The sandbox's Dataverse is plain http on 127.0.0.1.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
"""This computer, as a URL's parsed host (urlsplit lowercases it and drops IPv6 brackets)."""


def is_loopback(host: str | None) -> bool:
    """Whether a parsed host names this computer; never a prefix match."""
    return (host or "").lower() in LOOPBACK_HOSTS


def split_url(url: str) -> SplitResult | None:
    """The URL's parts, or None when it has no host or an unreadable port."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        return None
    return parts if parts.hostname else None


def is_secure_url(url: str) -> bool:
    """https to anywhere, or http to this computer only."""
    parts = split_url(url)
    if parts is None:
        return False
    scheme = parts.scheme.lower()
    return scheme == "https" or (scheme == "http" and is_loopback(parts.hostname))
