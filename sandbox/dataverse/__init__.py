"""Sandbox Dataverse Web API + Global Discovery (see sandbox/README.md for coverage)."""

from sandbox.dataverse.server import DataverseServer

__all__ = ["DataverseServer"]
