"""Fault injection shared by the sandbox servers: throttling, 503s, slow answers, dropped links.

A profile is set at start (`run.py sandbox --faults ...`) or at run time through each server's
admin endpoint or the Python object, and applies to every request that matches it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal, TypeVar

FaultKind = Literal["429", "503", "slow", "drop", "busy"]
"""429 / busy: throttling (HTTP 429 for Dataverse, ErrorServerBusy for EWS); 503: service
unavailable; slow: answer after `delay` seconds; drop: close the connection without answering."""

KINDS = ("429", "503", "slow", "drop", "busy")
OPTIONS = ("every", "times", "probability", "delay", "match")
MAX_DELAY = 3600.0
"""An hour: longer is a typo, and a sandbox answering never looks like a hang."""


class FaultSpecError(ValueError):
    """A `--faults` spec that cannot be read; the text names the spec and the problem."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"bad fault spec {spec!r}: {problem}")


N = TypeVar("N", int, float)


def _number(spec: str, key: str, text: str, kind: type[N], low: N, high: N | None) -> N:
    """`text` as an int or a finite float within [low, high]."""
    try:
        value = kind(text)
    except ValueError:
        raise FaultSpecError(spec, f"{key} must be a number, not {text!r}") from None
    if value != value or value < low or (high is not None and value > high):  # NaN too
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise FaultSpecError(spec, f"{key} must be {bounds}, not {text}")
    return value


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
        """`kind[:key=value,...]`, e.g. `429:every=5,delay=2` or `drop:probability=0.1`;
        raises FaultSpecError saying what is wrong, so a typo is not a traceback."""
        kind, _, rest = spec.partition(":")
        if kind not in KINDS:
            raise FaultSpecError(spec, f"unknown fault kind {kind!r} ({', '.join(KINDS)})")
        fault = cls(kind=kind)  # type: ignore[arg-type]
        for part in filter(None, rest.split(",")):
            key, equals, value = part.partition("=")
            if key not in OPTIONS:
                raise FaultSpecError(spec, f"unknown option {key!r} ({', '.join(OPTIONS)})")
            if key != "match" and not equals:
                raise FaultSpecError(spec, f"{key} needs a value ({key}=…)")
            if key in ("every", "times"):
                setattr(fault, key, _number(spec, key, value, int, 0, None))
            elif key == "probability":
                fault.probability = _number(spec, key, value, float, 0.0, 1.0)
            elif key == "delay":
                fault.delay = _number(spec, key, value, float, 0.0, MAX_DELAY)
            else:
                fault.match = value
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
