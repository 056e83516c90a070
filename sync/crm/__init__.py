"""The CRM side: a Dataverse Web API client (httpx), Global Discovery, and DataverseSide."""

from sync.crm.batch import BatchOp, BatchResult
from sync.crm.client import DataverseClient, DeltaPage, RetryPolicy
from sync.crm.discovery import Instance, discover_instances
from sync.crm.entities import KIND_SPECS, EntitySpec
from sync.crm.side import DataverseSide

__all__ = [
    "KIND_SPECS",
    "BatchOp",
    "BatchResult",
    "DataverseClient",
    "DataverseSide",
    "DeltaPage",
    "EntitySpec",
    "Instance",
    "RetryPolicy",
    "discover_instances",
]
