"""The sandbox Microsoft Graph (v1.0 subset): mail, contacts, calendar, To Do, delta, $batch."""

from sandbox.graph.server import GraphServer

__all__ = ["GraphServer"]
