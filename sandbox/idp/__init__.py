"""The sandbox identity provider: Entra-ID-shaped OpenID Connect endpoints for msal.

`IdentityServer(tokens, log, faults, tls_dir)` serves HTTPS on 127.0.0.1; `SANDBOX_CLIENT_ID` is
the public client id of the app registration it knows. Differences from Entra: sandbox/README.md.
"""

from sandbox.idp.grants import SANDBOX_CLIENT_ID
from sandbox.idp.server import IdentityServer

__all__ = ["SANDBOX_CLIENT_ID", "IdentityServer"]
