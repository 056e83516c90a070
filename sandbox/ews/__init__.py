"""The sandbox Exchange Web Services endpoint (exchangelib works against it unchanged)."""

from sandbox.ews.server import EwsServer

__all__ = ["EwsServer"]
