"""Stable ids the sandbox derives from sandbox/identity.py (business units, environments)."""

from __future__ import annotations

from sandbox.identity import stable_id


def business_unit_id(org: str) -> str:
    return stable_id("businessunit", org)


def environment_id(org: str) -> str:
    return stable_id("environment", org)
