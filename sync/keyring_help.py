"""Why the token cache cannot be encrypted here, in plain words, and the command that fixes it.

msal-extensions encrypts the cache with the platform's keyring: DPAPI on Windows, the Keychain
on macOS, and on Linux the Secret Service (GNOME Keyring or KWallet) through libsecret, which
it reaches with PyGObject (`gi`). A missing `gi` surfaced as "Unable to import module 'gi'",
which tells a user nothing; this module says what is missing and the one command that installs
it on this system (Debian and Ubuntu have it in apt; PyGObject is built into our virtualenv).
"""

from __future__ import annotations

import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from sync.setup.messages import N_


@dataclass(frozen=True)
class KeyringAdvice:
    """What is missing (a sentence) and, where we know it, the command that fixes it."""

    reason: str
    command: str | None


def _debian_major() -> int | None:
    try:
        text = Path("/etc/debian_version").read_text().strip()
    except OSError:
        return None
    head = text.split(".", 1)[0]
    return int(head) if head.isdigit() else 13  # testing/sid say e.g. "trixie/sid"


def advice_for(error: BaseException) -> KeyringAdvice:
    """The plain-words reason for `error` (what building the encrypted cache raised); the
    reason is an English message id the web page translates."""
    text = f"{type(error).__name__}: {error}"
    missing_gi = isinstance(error, ImportError) or "'gi'" in text or "No module named" in text
    if platform.system() != "Linux":
        return KeyringAdvice(
            N_("this computer's keyring could not be used to encrypt the sign-in tokens").text,
            None,
        )
    if not missing_gi:
        return KeyringAdvice(
            N_(
                "no keyring is running or it is locked (a desktop session's GNOME Keyring or "
                "KWallet keeps it; a server without a desktop has none)"
            ).text,
            None,
        )
    reason = N_(
        "the library that lets Mailbox Sync use your desktop keyring (PyGObject with libsecret) "
        "is not installed"
    ).text
    major = _debian_major()
    if major is None:
        return KeyringAdvice(reason, None)
    girepository, pygobject = (
        ("libgirepository1.0-dev", "PyGObject<3.51") if major <= 12 else
        ("libgirepository-2.0-dev", "PyGObject")
    )  # fmt: skip
    apt = f"sudo apt install gir1.2-secret-1 gnome-keyring {girepository} libcairo2-dev pkg-config"
    pip = f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(pygobject)}"
    return KeyringAdvice(reason, f"{apt} && {pip}")
