"""Addresses typed by the user — service URLs, host names, e-mail addresses — checked before
any network call, so a bad one gets a message on its field instead of an exception deep in an
HTTP or socket library (a 100,000-character address made httpx raise `InvalidURL`).

Plain http is allowed only to this computer (the sandbox's Dataverse is http on 127.0.0.1):
the host is compared exactly, as parsed, because a prefix test lets
`http://127.0.0.1.evil.example/` through to the network in clear text.
"""

from __future__ import annotations

import re

from sync.setup.messages import N_, Msg
from sync.urls import is_loopback, is_secure_url, split_url

__all__ = ["email_problem", "host_problem", "is_loopback", "is_secure_url", "service_url_problem"]

MAX_URL = 2048
"""Longer URLs are refused by many servers and proxies; no real service address comes close."""
MAX_EMAIL, MAX_LOCAL_PART = 254, 64
"""RFC 5321: a path holds at most 256 octets with its angle brackets; a local part at most 64."""
MAX_HOST, MAX_LABEL = 253, 63
"""DNS: a name of at most 253 characters, each dot-separated label at most 63."""

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HOST_NAME = re.compile(r"^[A-Za-z0-9.-]+$")
HOST_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")


def service_url_problem(
    url: str, example: str, insecure: Msg, https_only: bool = False
) -> Msg | None:
    """Why `url` cannot be a service's address (None when it can): too long, not a full URL
    (`example` shows one), or plain http to another computer (`insecure` says so); with
    `https_only`, plain http to any computer (a service whose client speaks TLS only)."""
    if len(url) > MAX_URL:
        return N_("The address is too long (at most %(max)s characters).", max=MAX_URL)
    parts = split_url(url)
    if parts is None or any(ord(c) < 33 or ord(c) == 127 for c in url):
        return N_("Enter a full address, like %(example)s.", example=example)
    secure = parts.scheme.lower() == "https" if https_only else is_secure_url(url)
    return None if secure else insecure


def _labels_fit(name: str) -> bool:
    """DNS lengths: the whole name and each of its labels (a trailing dot allowed)."""
    labels = name.removesuffix(".").split(".")
    return len(name) <= MAX_HOST and all(0 < len(label) <= MAX_LABEL for label in labels)


def email_problem(address: str) -> Msg | None:
    """Why `address` cannot be a mailbox's address (None when it can): its shape, and RFC
    5321's lengths, which also keep it small enough for the CRM query that looks it up."""
    local, _, domain = address.rpartition("@")
    if len(address) > MAX_EMAIL or len(local) > MAX_LOCAL_PART:
        return N_(
            "An e-mail address has at most %(max)s characters (%(local)s before the @).",
            max=MAX_EMAIL,
            local=MAX_LOCAL_PART,
        )
    if (
        not EMAIL.match(address)
        or any(ord(c) < 32 or ord(c) == 127 for c in address)
        or not _labels_fit(domain)
    ):
        return N_("Enter the mailbox's e-mail address, like name@example.com.")
    return None


def host_problem(host: str) -> Msg | None:
    """Why `host` cannot be a server's host name or [IP literal] (None when it can)."""
    if HOST_LITERAL.match(host) or (HOST_NAME.match(host) and _labels_fit(host)):
        return None
    return N_("Enter the server's host name, like mail.example.com.")
