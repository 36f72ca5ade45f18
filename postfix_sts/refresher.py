"""Background re-checks of cached policies that are in use.

RFC 8461 section 3.3 (last paragraph): senders SHOULD refresh cached policies
before they expire.  Each cached policy has a ``next_check_at``
(:mod:`postfix_sts.core.cache_rules`); the refresher keeps those times in a heap
and, once a second, starts the due re-checks:

* only for policies used within ``idle_limit`` seconds; an unused policy is not
  refreshed and is dropped when it expires ("ages out"); it is looked at again
  hourly, so one that comes back into use is refreshed again;
* at most ``rate`` re-checks a second, the rest wait for the next tick;
* policies loaded at start-up whose check is overdue are spread at random over
  ``spread`` seconds, so a restart never causes a burst of fetches.

Re-checks go through the service's single-flight resolution, so a re-check and
a lookup of the same domain share one resolution.  The same tick picks up
changes other processes made to the durable store (``postfix-sts cache purge``).
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
from postfix_sts.metrics import Metrics

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
#: How often an idle policy is looked at again, in case lookups use it again.
IDLE_RECHECK_SECONDS = 3600.0


class Refresher:
    """Schedules and starts background re-checks; see the module docstring."""

    def __init__(
        self,
        *,
        cache: PolicyCache,
        refresh: Callable[[str], Coroutine[Any, Any, str]],
        metrics: Metrics,
        clock: Clock,
        rng: random.Random,
        rate: float,
        idle_limit: float,
        spread: float,
    ) -> None:
        self._cache = cache
        self._refresh = refresh
        self._metrics = metrics
        self._clock = clock
        self._rng = rng
        self.reconfigure(rate=rate, idle_limit=idle_limit, spread=spread)
        self._heap: list[tuple[float, str]] = []
        self._running: set[asyncio.Task[str]] = set()

    def reconfigure(self, *, rate: float, idle_limit: float, spread: float) -> None:
        self._per_tick = max(1, int(rate * TICK_SECONDS))
        self._idle_limit = idle_limit
        self._spread = spread

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
                # idle: not refreshed; looked at again later in case it is used again
                self.schedule(domain, min(entry.expires_at, now + IDLE_RECHECK_SECONDS))
            elif domain not in due:
                due.append(domain)
        return due

    async def run(self) -> None:
        """Start due re-checks every tick, forever (cancel to stop)."""
        try:
            while True:
                now = self._clock.now()
                for entry in self._cache.pick_up_external_changes(now):
                    self.schedule(entry.domain, entry.next_check_at)
                for domain in self.take_due(now):
                    task = asyncio.get_running_loop().create_task(self._refresh(domain))
                    self._running.add(task)
                    task.add_done_callback(self._done)
                overdue = now - self._heap[0][0] if self._heap else 0.0
                self._metrics.refresh_oldest_due.set(max(overdue, 0.0))
                await asyncio.sleep(TICK_SECONDS)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    def _done(self, task: "asyncio.Task[str]") -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            self._metrics.refresh("error")
            log.error("refresh failed", exc_info=task.exception())
        else:
            self._metrics.refresh(task.result())

    def __len__(self) -> int:
        return len(self._heap)
