"""The device authorization grant of the sandbox identity provider (v2-oauth2-device-code.md).

A command-line client posts to `/devicecode` and shows the user a short code and the
verification page; the user opens that page in any browser, types the code and signs in; the
client meanwhile polls the token endpoint with the long device code, answered
`authorization_pending` (AADSTS70016) until the user is done, `authorization_declined`,
`expired_token` or `bad_verification_code` as Entra does. Codes live 15 minutes (the
documented default of `expires_in`); the sandbox asks for a 1-second polling interval where
Entra says 5, so scripted sign-ins are quick (a documented difference).
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass, field

DEVICE_CODE_LIFETIME = 900.0
POLL_INTERVAL = 1
USER_CODE_ALPHABET = string.ascii_uppercase.replace("O", "").replace("I", "") + "23456789"


@dataclass
class DeviceGrant:
    """One device sign-in: what the client asked for and, once approved, who signed in."""

    client_id: str
    scopes: tuple[str, ...]
    user_code: str
    expires_at: float
    upn: str | None = None
    declined: bool = False
    redeemed: bool = False


@dataclass
class DeviceStore:
    """Thread-safe memory of pending device sign-ins, by device code and by user code."""

    _by_device: dict[str, DeviceGrant] = field(default_factory=dict)
    _by_user: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, client_id: str, scopes: tuple[str, ...]) -> tuple[str, DeviceGrant]:
        """A new device code and its grant (with a short user code no other grant has)."""
        with self._lock:
            while True:
                user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(9))
                if user_code not in self._by_user:
                    break
            device_code = "sbxdevice." + secrets.token_urlsafe(32)
            grant = DeviceGrant(client_id, scopes, user_code, time.time() + DEVICE_CODE_LIFETIME)
            self._by_device[device_code] = grant
            self._by_user[user_code] = device_code
        return device_code, grant

    def by_user_code(self, user_code: str) -> DeviceGrant | None:
        """The live grant a user typed the code of (case and spaces forgiven), if any."""
        wanted = user_code.strip().upper().replace(" ", "").replace("-", "")
        with self._lock:
            device_code = self._by_user.get(wanted)
            grant = self._by_device.get(device_code or "")
        if grant is None or grant.expires_at < time.time() or grant.upn or grant.declined:
            return None
        return grant

    def approve(self, grant: DeviceGrant, upn: str) -> None:
        with self._lock:
            grant.upn = upn

    def decline(self, grant: DeviceGrant) -> None:
        with self._lock:
            grant.declined = True

    def poll(self, device_code: str, client_id: str) -> DeviceGrant | str:
        """The approved grant (spent now), or the error the token endpoint answers."""
        with self._lock:
            grant = self._by_device.get(device_code)
            if grant is None or grant.client_id != client_id or grant.redeemed:
                return "bad_verification_code"
            if grant.expires_at < time.time():
                return "expired_token"
            if grant.declined:
                return "authorization_declined"
            if grant.upn is None:
                return "authorization_pending"
            grant.redeemed = True
            self._by_user.pop(grant.user_code, None)
            return grant
