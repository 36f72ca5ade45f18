"""Time, injected: the only place that reads the system clocks.

Core functions never read a clock; the service reads ``now()`` once per lookup
and passes it down, so tests can use :class:`ManualClock` and hit exact
boundaries such as ``fetched_at + max_age``.
"""

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (policy ages and expiry)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (durations and deadlines)."""
        ...


class SystemClock:
    """The real clocks."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
