"""A log of every request a sandbox server answered, for tests and benchmarks to count."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LoggedRequest:
    at: float
    service: str  # "dataverse" | "discovery" | "ews" | "identity"
    user: str | None  # UPN, when authenticated
    method: str  # HTTP method
    target: str  # entity set (Dataverse) or SOAP operation (EWS)
    status: int  # HTTP status sent (0 = connection dropped)
    detail: str = ""  # e.g. "throttled retry_after=2", "ErrorServerBusy", "$batch:12"
    duration: float = 0.0


@dataclass
class RequestLog:
    entries: list[LoggedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: LoggedRequest) -> None:
        with self._lock:
            self.entries.append(entry)

    def record(
        self,
        service: str,
        user: str | None,
        method: str,
        target: str,
        status: int,
        detail: str = "",
        started: float | None = None,
    ) -> None:
        now = time.time()
        self.add(
            LoggedRequest(
                now,
                service,
                user,
                method,
                target,
                status,
                detail,
                now - started if started else 0.0,
            )
        )

    def snapshot(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self.entries)

    def clear(self) -> None:
        with self._lock:
            self.entries.clear()

    def __iter__(self) -> Iterator[LoggedRequest]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self.entries)

    def count(self, **match: object) -> int:
        """How many entries have all the given attribute values (e.g. service="ews")."""
        return sum(all(getattr(e, k) == v for k, v in match.items()) for e in self.snapshot())
