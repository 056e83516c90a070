"""Fault injection shared by the sandbox servers: throttling, 503s, slow answers, dropped links.

A profile is set at start (`run.py sandbox --faults ...`) or at run time through each server's
admin endpoint or the Python object, and applies to every request that matches it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["429", "503", "slow", "drop", "busy"]
"""429 / busy: throttling (HTTP 429 for Dataverse, ErrorServerBusy for EWS); 503: service
unavailable; slow: answer after `delay` seconds; drop: close the connection without answering."""


@dataclass
class Fault:
    kind: FaultKind
    every: int = 0
    """Hit every Nth matching request (1 = every one); 0 = use `probability`."""
    probability: float = 0.0
    delay: float = 1.0
    """Seconds for `slow`; the Retry-After / BackOffMilliseconds hint for 429 and busy."""
    times: int | None = None
    """Stop after this many hits (None: never)."""
    match: str = ""
    """Only requests whose path or operation contains this text ('' = all)."""
    hits: int = 0
    seen: int = 0

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`kind[:key=value,...]`, e.g. `429:every=5,delay=2` or `drop:probability=0.1`."""
        kind, _, rest = spec.partition(":")
        if kind not in ("429", "503", "slow", "drop", "busy"):
            raise ValueError(f"unknown fault kind {kind!r} (429, 503, slow, drop, busy)")
        fault = cls(kind=kind)  # type: ignore[arg-type]
        for part in filter(None, rest.split(",")):
            key, _, value = part.partition("=")
            if key in ("every", "times"):
                setattr(fault, key, int(value))
            elif key in ("probability", "delay"):
                setattr(fault, key, float(value))
            elif key == "match":
                fault.match = value
            else:
                raise ValueError(f"unknown fault option {key!r}")
        if not fault.every and not fault.probability:
            fault.every = 1
        return fault


@dataclass
class FaultProfile:
    """The faults in force; `pick` decides, per request, which one (if any) strikes."""

    faults: list[Fault] = field(default_factory=list)
    seed: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def set(self, *faults: Fault) -> None:
        with self._lock:
            self.faults = list(faults)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def clear(self) -> None:
        self.set()

    def pick(self, what: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match and fault.match not in what:
                    continue
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                fault.seen += 1
                if fault.every:
                    strike = fault.seen % fault.every == 0
                else:
                    strike = self._random.random() < fault.probability
                if strike:
                    fault.hits += 1
                    return fault
        return None
