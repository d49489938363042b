"""Clocks: the system clock, and a manual one that tests move by hand."""
from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where anything timed in the lake reads the time."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""

    def time_ns(self) -> int:
        """Wall-clock nanoseconds since the Unix epoch."""


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """A clock that only moves when `advance` is called."""

    def __init__(self, start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._ns = start_ns
        self._mono = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time_ns(self) -> int:
        with self._lock:
            return self._ns

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds
            self._ns += int(seconds * 1e9)
