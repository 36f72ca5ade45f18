"""Background re-checks of cached policies that are in use.

RFC 8461 section 3.3 (last paragraph): senders SHOULD refresh cached policies
before they expire.  Each cached policy has a ``next_check_at``
(:mod:`postfix_sts.core.cache_rules`); the refresher keeps those times in a heap
and, once a second, starts the due re-checks:

* only for policies used within ``idle_limit`` seconds; an unused policy is not
  refreshed and is dropped when it expires ("ages out");
* at most ``rate`` re-checks a second, the rest wait for the next tick;
* policies loaded at start-up whose check is overdue are spread at random over
  ``spread`` seconds, so a restart never causes a burst of fetches.

Re-checks go through the service's single-flight resolution, so a re-check and
a lookup of the same domain share one resolution.
"""

import asyncio
import heapq
import logging
import random
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from postfix_sts.cache.hot import HotPolicy, PolicyCache
from postfix_sts.clock import Clock
from postfix_sts.core.cache_rules import CachedPolicy

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0


class Refresher:
    """Schedules and starts background re-checks; see the module docstring."""

    def __init__(
        self,
        *,
        cache: PolicyCache,
        resolve: Callable[[str], Coroutine[Any, Any, object]],
        clock: Clock,
        rng: random.Random,
        rate: float,
        idle_limit: float,
        spread: float,
    ) -> None:
        self._cache = cache
        self._resolve = resolve
        self._clock = clock
        self._rng = rng
        self._per_tick = max(1, int(rate * TICK_SECONDS))
        self._idle_limit = idle_limit
        self._spread = spread
        self._heap: list[tuple[float, str]] = []
        self._running: set[asyncio.Task[object]] = set()

    def schedule(self, domain: str, at: float) -> None:
        heapq.heappush(self._heap, (at, domain))

    def schedule_loaded(self, entries: Iterable[CachedPolicy], now: float) -> None:
        """Schedule policies loaded at start-up, overdue ones spread over ``spread`` s."""
        for entry in entries:
            at = entry.next_check_at
            if at <= now:
                at = now + self._rng.uniform(0, self._spread)
            self.schedule(entry.domain, at)

    def take_due(self, now: float) -> list[str]:
        """Pop the domains to re-check now (at most the per-tick rate); age out idle ones."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now and len(due) < self._per_tick:
            _, domain = heapq.heappop(self._heap)
            hot = self._cache.peek(domain)
            if not isinstance(hot, HotPolicy) or hot.entry.next_check_at > now:
                continue  # gone, negative, or rescheduled: a newer heap item exists
            entry = hot.entry
            if not entry.servable(now):
                self._cache.remove(domain, persist=True)
                log.info("refresh: policy of %s expired unused; dropped", domain)
            elif hot.last_used < now - self._idle_limit:
                self.schedule(domain, entry.expires_at)  # idle: let it age out
            elif domain not in due:
                due.append(domain)
        return due

    async def run(self) -> None:
        """Start due re-checks every tick, forever (cancel to stop)."""
        try:
            while True:
                for domain in self.take_due(self._clock.now()):
                    task = asyncio.get_running_loop().create_task(self._resolve(domain))
                    self._running.add(task)
                    task.add_done_callback(self._done)
                await asyncio.sleep(TICK_SECONDS)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    def _done(self, task: "asyncio.Task[object]") -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("refresh failed", exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._heap)
