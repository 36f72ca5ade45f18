"""Background re-checks of cached policies (``Refresher.take_due`` and scheduling).

RFC 8461 section 3.3, last paragraph: senders SHOULD refresh cached policies before
they expire (checklist #96).  The refresher re-checks only policies in use, at a
bounded rate, lets unused ones age out at ``fetched_at + max_age`` (section 3.2),
and spreads overdue checks after a restart.  Everything here is synchronous: the
``resolve`` coroutine function is never awaited by ``take_due``.
"""

import random

import pytest

from postfix_sts.cache.hot import PolicyCache
from postfix_sts.cache.store import VolatileStore
from postfix_sts.clock import ManualClock
from postfix_sts.core.cache_rules import CachedPolicy, Intervals, NoRecord, negative_entry
from postfix_sts.core.sts_policy import Mode, StsPolicy
from postfix_sts.metrics import Metrics
from postfix_sts.refresher import Refresher

MAX_AGE = 86_400
IDLE_LIMIT = 3_600.0
SPREAD = 600.0
POLICY = StsPolicy(Mode.ENFORCE, MAX_AGE, ("mx.example.com",), "p")


async def no_refresh(domain: str) -> str:
    raise AssertionError(f"take_due must not refresh {domain}")


class RecordingStore(VolatileStore):
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, domain: str) -> None:
        self.deleted.append(domain)


class World:
    """A clock, a cache and a refresher wired together."""

    def __init__(self, *, rate: float = 100.0, store: VolatileStore | None = None) -> None:
        self.clock = ManualClock()
        self.t0 = self.clock.now()
        self.store = store if store is not None else VolatileStore()
        self.cache = PolicyCache(self.store, 1_000)
        self.refresher = Refresher(
            cache=self.cache,
            refresh=no_refresh,
            metrics=Metrics("memory"),
            clock=self.clock,
            rng=random.Random(0),
            rate=rate,
            idle_limit=IDLE_LIMIT,
            spread=SPREAD,
        )

    def entry(self, domain: str, *, next_check_in: float, age: float = 0.0) -> CachedPolicy:
        """A policy fetched ``age`` seconds ago, due ``next_check_in`` seconds from now."""
        now = self.clock.now()
        return CachedPolicy(domain, "1", POLICY, now - age, now + next_check_in)

    def add(
        self, domain: str, *, next_check_in: float, age: float = 0.0, used_ago: float = 0.0
    ) -> CachedPolicy:
        """Cache a policy last used ``used_ago`` seconds ago and schedule its check."""
        entry = self.entry(domain, next_check_in=next_check_in, age=age)
        now = self.clock.now()
        self.cache.put(entry, persist=False, now=now - used_ago)
        self.refresher.schedule(domain, entry.next_check_at)
        return entry

    def take_due(self) -> list[str]:
        return self.refresher.take_due(self.clock.now())


# --- due and not due ----------------------------------------------------------------------


def test_due_policy_in_use_is_returned() -> None:
    """Section 3.3: a policy in use is re-checked when its check falls due."""
    world = World()
    world.add("example.com", next_check_in=0.0, used_ago=10.0)
    assert ["example.com"] == world.take_due()
    assert 0 == len(world.refresher)


def test_policy_not_yet_due_is_not_returned() -> None:
    world = World()
    world.add("example.com", next_check_in=60.0)
    assert [] == world.take_due()
    assert 1 == len(world.refresher)


def test_policy_is_returned_once_its_time_comes() -> None:
    world = World()
    world.add("example.com", next_check_in=60.0)
    world.clock.advance(59.9)
    assert [] == world.take_due()
    world.clock.advance(0.1)
    assert ["example.com"] == world.take_due()


def test_due_policies_come_in_schedule_order() -> None:
    world = World()
    world.add("c.example", next_check_in=3.0)
    world.add("a.example", next_check_in=1.0)
    world.add("b.example", next_check_in=2.0)
    world.clock.advance(3.0)
    assert ["a.example", "b.example", "c.example"] == world.take_due()


def test_nothing_scheduled_returns_nothing() -> None:
    assert [] == World().take_due()


# --- rate ---------------------------------------------------------------------------------


def test_at_most_rate_domains_per_tick_and_the_rest_wait() -> None:
    """At most ``rate`` re-checks a second; the others stay for the next tick."""
    world = World(rate=2.0)
    for i in range(5):
        world.add(f"d{i}.example", next_check_in=float(i) / 10, used_ago=1.0)
    world.clock.advance(1.0)
    assert ["d0.example", "d1.example"] == world.take_due()
    assert 3 == len(world.refresher)
    assert ["d2.example", "d3.example"] == world.take_due()
    assert ["d4.example"] == world.take_due()
    assert [] == world.take_due()


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0])
def test_rate_below_one_per_second_still_checks_one_per_tick(rate: float) -> None:
    world = World(rate=rate)
    world.add("a.example", next_check_in=0.0)
    world.add("b.example", next_check_in=0.0)
    assert 1 == len(world.take_due())
    assert 1 == len(world.take_due())


def test_skipped_items_do_not_use_up_the_rate() -> None:
    """Idle, expired or stale heap items are not re-checks and do not count."""
    world = World(rate=1.0)
    world.add("idle.example", next_check_in=0.0, used_ago=IDLE_LIMIT + 1)
    world.refresher.schedule("gone.example", world.t0)
    world.add("busy.example", next_check_in=0.5)
    world.clock.advance(1.0)
    assert ["busy.example"] == world.take_due()


# --- idle policies age out ----------------------------------------------------------------


def test_idle_policy_is_not_returned() -> None:
    """A policy unused for longer than ``idle_limit`` is not refreshed."""
    world = World()
    world.add("idle.example", next_check_in=0.0, used_ago=IDLE_LIMIT + 1)
    assert [] == world.take_due()


def test_policy_used_exactly_idle_limit_ago_is_still_in_use() -> None:
    """``idle_limit`` is inclusive: used within the limit counts as in use."""
    world = World()
    world.add("edge.example", next_check_in=0.0, used_ago=IDLE_LIMIT)
    assert ["edge.example"] == world.take_due()


def test_idle_policy_is_rescheduled_to_its_expiry_and_dropped_then() -> None:
    """Section 3.2: an unused policy is kept, unrefreshed, until ``fetched_at + max_age``."""
    world = World()
    entry = world.add("idle.example", next_check_in=0.0, used_ago=IDLE_LIMIT + 1)
    assert [] == world.take_due()
    assert 1 == len(world.refresher)
    assert [] == world.refresher.take_due(entry.expires_at - 0.001)
    assert world.cache.peek("idle.example") is not None
    assert 1 == len(world.refresher)
    assert [] == world.refresher.take_due(entry.expires_at)
    assert None is world.cache.peek("idle.example")
    assert 0 == len(world.refresher)


# --- expired policies ---------------------------------------------------------------------


def test_expired_policy_is_removed_from_the_cache() -> None:
    """Section 3.2: never serve a policy after ``fetched_at + max_age``."""
    store = RecordingStore()
    world = World(store=store)
    world.add("old.example", next_check_in=0.0, age=MAX_AGE)
    assert [] == world.take_due()
    assert None is world.cache.peek("old.example")
    assert ["old.example"] == store.deleted


def test_policy_one_second_before_expiry_is_still_refreshed() -> None:
    """Section 3.3: refresh *before* expiry."""
    world = World()
    world.add("late.example", next_check_in=0.0, age=MAX_AGE - 1)
    assert ["late.example"] == world.take_due()


# --- stale heap items ---------------------------------------------------------------------


def test_duplicate_heap_items_yield_the_domain_once() -> None:
    world = World()
    world.add("example.com", next_check_in=0.0)
    world.refresher.schedule("example.com", world.t0)
    world.refresher.schedule("example.com", world.t0)
    assert ["example.com"] == world.take_due()
    assert 0 == len(world.refresher)


def test_heap_item_for_a_rescheduled_policy_is_skipped() -> None:
    """A resolution moved ``next_check_at`` later; the old heap item is stale."""
    world = World()
    world.add("example.com", next_check_in=10.0)
    moved = world.entry("example.com", next_check_in=100.0)
    world.cache.put(moved, persist=False, now=world.t0)
    world.refresher.schedule("example.com", moved.next_check_at)
    world.clock.advance(10.0)
    assert [] == world.take_due()
    world.clock.advance(90.0)
    assert ["example.com"] == world.take_due()


def test_heap_item_for_a_removed_domain_is_skipped() -> None:
    world = World()
    world.add("example.com", next_check_in=0.0)
    world.cache.remove("example.com", persist=False)
    assert [] == world.take_due()
    assert 0 == len(world.refresher)


def test_heap_item_for_a_negative_entry_is_skipped() -> None:
    """A domain whose policy was dropped has nothing to refresh in the background."""
    world = World()
    world.add("example.com", next_check_in=0.0)
    intervals = Intervals(recheck=3_600.0, retry=300.0)
    negative = negative_entry(
        "example.com", NoRecord("no-sts-record", "NXDOMAIN"), 0, now=world.t0, intervals=intervals
    )
    world.cache.put_negative(negative, now=world.t0)
    assert [] == world.take_due()
    assert 0 == len(world.refresher)


# --- start-up scheduling ------------------------------------------------------------------


def test_schedule_loaded_spreads_overdue_policies_over_the_spread() -> None:
    """No burst of fetches after a restart: overdue checks fall within [now, now+spread]."""
    world = World(rate=1_000.0)
    domains = [f"d{i:02}.example" for i in range(40)]
    entries = [world.entry(d, next_check_in=-float(i)) for i, d in enumerate(domains)]
    for entry in entries:
        world.cache.put(entry, persist=False, now=world.t0)
    world.refresher.schedule_loaded(entries, world.t0)
    due_at: dict[str, int] = {}
    for second in range(int(SPREAD) + 1):
        for domain in world.refresher.take_due(world.t0 + second):
            due_at.setdefault(domain, second)
    assert set(domains) == set(due_at)
    assert 0 == len(world.refresher)
    assert len(set(due_at.values())) > 10  # spread out, not all at once
    assert max(due_at.values()) > SPREAD / 2


def test_schedule_loaded_treats_a_check_due_exactly_now_as_overdue() -> None:
    world = World(rate=1_000.0)
    entry = world.entry("now.example", next_check_in=0.0)
    world.cache.put(entry, persist=False, now=world.t0)
    world.refresher.schedule_loaded([entry], world.t0)
    assert 1 == len(world.refresher)
    assert ["now.example"] == world.refresher.take_due(world.t0 + SPREAD)


def test_schedule_loaded_keeps_future_checks_at_their_time() -> None:
    """A check not yet due keeps its ``next_check_at``, even beyond the spread."""
    world = World(rate=1_000.0)
    entry = world.entry("future.example", next_check_in=SPREAD + 100)
    world.cache.put(entry, persist=False, now=world.t0)
    world.refresher.schedule_loaded([entry], world.t0)
    assert [] == world.refresher.take_due(entry.next_check_at - 0.001)
    assert ["future.example"] == world.refresher.take_due(entry.next_check_at)


def test_schedule_loaded_keeps_a_near_future_check_at_its_time() -> None:
    """Future checks inside the spread window are not moved either."""
    world = World(rate=1_000.0)
    entry = world.entry("soon.example", next_check_in=5.0)
    world.cache.put(entry, persist=False, now=world.t0)
    world.refresher.schedule_loaded([entry], world.t0)
    assert [] == world.refresher.take_due(world.t0 + 4.999)
    assert ["soon.example"] == world.refresher.take_due(world.t0 + 5.0)


def test_schedule_loaded_with_the_same_seed_is_deterministic() -> None:
    """The injected ``random.Random`` makes the spread reproducible in tests."""

    def due_seconds() -> list[tuple[int, str]]:
        world = World(rate=1_000.0)
        entries = [world.entry(f"d{i}.example", next_check_in=-1.0) for i in range(10)]
        for entry in entries:
            world.cache.put(entry, persist=False, now=world.t0)
        world.refresher.schedule_loaded(entries, world.t0)
        return [
            (second, domain)
            for second in range(int(SPREAD) + 1)
            for domain in world.refresher.take_due(world.t0 + second)
        ]

    assert due_seconds() == due_seconds()
