"""Sandbox Dataverse Web API + Global Discovery (see sandbox/DATAVERSE.md for coverage)."""

from sandbox.dataverse.server import DataverseServer

__all__ = ["DataverseServer"]
