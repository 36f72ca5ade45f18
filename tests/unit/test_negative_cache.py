"""Negative caching and the hot in-memory policy cache.

``negative_entry``: an authoritative "no policy" is remembered for its DNS negative
TTL (RFC 2308 section 5) within ``[negative_min, negative_max]``; a failure with
nothing cached backs off exponentially from ``backoff_min`` to ``backoff_max``
(RFC 8461 section 3.3 / 10.2: do not hammer a failing server).

``PolicyCache``: the lookup hot path reads only memory; a negative entry answers
NOTFOUND (RFC 8461 section 5: no policy, deliver as usual); re-scheduling an
unchanged policy keeps its rendered answers.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.cache.hot import HotNegative, HotPolicy, PolicyCache
from postfix_sts.cache.store import VolatileStore
from postfix_sts.core.answer import NOTFOUND
from postfix_sts.core.cache_rules import (
    CachedPolicy,
    Failure,
    Intervals,
    NegativeEntry,
    NoRecord,
    negative_entry,
)
from postfix_sts.core.render import Profile, render_policy
from postfix_sts.core.sts_policy import Mode, StsPolicy

DOMAIN = "example.com"
T0 = 1_700_000_000.0
INTERVALS = Intervals(
    recheck=3_600.0,
    retry=300.0,
    negative_min=60.0,
    negative_max=3_600.0,
    backoff_min=30.0,
    backoff_max=900.0,
)
PROFILE = Profile()
TLSRPT = Profile(name="tlsrpt", tlsrpt=True)

NXDOMAIN = NoRecord("no-sts-record", "_mta-sts.example.com: NXDOMAIN", ttl=300.0)
SERVFAIL = Failure("dns", "SERVFAIL")

POLICY = StsPolicy(Mode.ENFORCE, 86_400, ("mx1.example.com",), "p1")
OTHER_POLICY = StsPolicy(Mode.ENFORCE, 86_400, ("mx2.example.com",), "p2")


def cached(
    policy: StsPolicy = POLICY, *, fetched_at: float = T0, next_check_at: float = T0 + 3_600
) -> CachedPolicy:
    return CachedPolicy(DOMAIN, "id-1", policy, fetched_at, next_check_at)


class RecordingStore(VolatileStore):
    """A volatile store that remembers which writes reached it."""

    def __init__(self) -> None:
        self.saved: list[CachedPolicy] = []
        self.deleted: list[str] = []

    def save(self, entry: CachedPolicy) -> None:
        self.saved.append(entry)

    def delete(self, domain: str) -> None:
        self.deleted.append(domain)


# --- negative_entry: no record ------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "hold"),
    [(300.0, 300.0), (60.0, 60.0), (3_600.0, 3_600.0), (0.0, 60.0), (5.0, 60.0), (86_400, 3_600)],
)
def test_no_record_is_held_for_its_ttl_clamped_to_bounds(ttl: float, hold: float) -> None:
    """RFC 2308 section 5: the negative TTL, kept within [negative_min, negative_max]."""
    cause = NoRecord("no-sts-record", "NXDOMAIN", ttl=ttl)
    entry = negative_entry(DOMAIN, cause, 0, now=T0, intervals=INTERVALS)
    assert T0 + hold == entry.until


def test_no_record_entry_carries_domain_and_reason() -> None:
    """The entry names what it is about, for logs and metrics."""
    assert NegativeEntry(DOMAIN, T0 + 300.0, 0, "no-sts-record") == negative_entry(
        DOMAIN, NXDOMAIN, 0, now=T0, intervals=INTERVALS
    )


def test_no_record_resets_the_failure_count() -> None:
    """An authoritative answer ends a run of failures: the next failure starts over."""
    entry = negative_entry(DOMAIN, NXDOMAIN, 7, now=T0, intervals=INTERVALS)
    assert 0 == entry.failures
    after = negative_entry(DOMAIN, SERVFAIL, entry.failures, now=T0, intervals=INTERVALS)
    assert T0 + INTERVALS.backoff_min == after.until


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_no_record_hold_is_always_within_bounds(ttl: float) -> None:
    """Whatever DNS says, the hold is in [negative_min, negative_max]."""
    entry = negative_entry(DOMAIN, NoRecord("r", "d", ttl=ttl), 3, now=T0, intervals=INTERVALS)
    assert INTERVALS.negative_min <= entry.until - T0 <= INTERVALS.negative_max


# --- negative_entry: failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "hold"),
    [(0, 30.0), (1, 60.0), (2, 120.0), (3, 240.0), (4, 480.0), (5, 900.0), (6, 900.0)],
)
def test_failure_backoff_doubles_from_min_up_to_max(previous: int, hold: float) -> None:
    """Consecutive failures: backoff_min, 2x, 4x, ... capped at backoff_max."""
    entry = negative_entry(DOMAIN, SERVFAIL, previous, now=T0, intervals=INTERVALS)
    assert T0 + hold == entry.until


def test_failure_increments_the_failure_count() -> None:
    """``failures`` counts consecutive failures."""
    first = negative_entry(DOMAIN, SERVFAIL, 0, now=T0, intervals=INTERVALS)
    second = negative_entry(DOMAIN, SERVFAIL, first.failures, now=T0, intervals=INTERVALS)
    third = negative_entry(DOMAIN, SERVFAIL, second.failures, now=T0, intervals=INTERVALS)
    assert [1, 2, 3] == [first.failures, second.failures, third.failures]


def test_failure_entry_carries_domain_and_reason() -> None:
    assert NegativeEntry(DOMAIN, T0 + 30.0, 1, "dns") == negative_entry(
        DOMAIN, SERVFAIL, 0, now=T0, intervals=INTERVALS
    )


def test_very_long_failure_run_stays_at_backoff_max() -> None:
    """No overflow after thousands of failures."""
    entry = negative_entry(DOMAIN, SERVFAIL, 10_000, now=T0, intervals=INTERVALS)
    assert (T0 + INTERVALS.backoff_max, 10_001) == (entry.until, entry.failures)


def test_default_intervals_bound_backoff_and_negative_hold() -> None:
    """Defaults: no policy for 1 min .. 1 h, failure backoff 1 min .. 15 min."""
    defaults = Intervals(recheck=3_600.0, retry=300.0)
    assert (60.0, 3_600.0, 60.0, 900.0) == (
        defaults.negative_min,
        defaults.negative_max,
        defaults.backoff_min,
        defaults.backoff_max,
    )


@given(st.integers(min_value=0, max_value=200))
def test_failure_backoff_is_within_bounds_and_never_shrinks(previous: int) -> None:
    """Each further failure waits at least as long as the one before."""
    this = negative_entry(DOMAIN, SERVFAIL, previous, now=T0, intervals=INTERVALS)
    following = negative_entry(DOMAIN, SERVFAIL, previous + 1, now=T0, intervals=INTERVALS)
    assert INTERVALS.backoff_min <= this.until - T0 <= INTERVALS.backoff_max
    assert this.until <= following.until


# --- PolicyCache: policies ----------------------------------------------------------------


def test_unknown_domain_is_not_in_the_cache() -> None:
    assert None is PolicyCache(VolatileStore(), 10).peek(DOMAIN)


def test_put_policy_then_peek_returns_it_with_its_rendered_answer() -> None:
    """RFC 8461 section 5: a cached enforce policy answers ``secure``."""
    cache = PolicyCache(VolatileStore(), 10)
    entry = cached()
    cache.put(entry, persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert isinstance(hot, HotPolicy)
    assert entry == hot.entry
    assert entry.expires_at == hot.expires_at
    assert render_policy(DOMAIN, POLICY, PROFILE) == hot.answer(PROFILE)
    assert entry == cache.get(DOMAIN)
    assert 1 == len(cache)


def test_answers_are_rendered_per_profile() -> None:
    """Each profile (socketmap map name) gets its own rendering."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    assert render_policy(DOMAIN, POLICY, PROFILE) == hot.answer(PROFILE)
    assert render_policy(DOMAIN, POLICY, TLSRPT) == hot.answer(TLSRPT)


def test_answer_is_rendered_once_and_reused() -> None:
    """The hot path does not re-render: the same Answer object comes back."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    assert hot.answer(PROFILE) is hot.answer(PROFILE)


def test_put_of_same_policy_keeps_rendered_answers_and_updates_next_check() -> None:
    """A re-check that keeps the policy (section 3.3, id unchanged) changes only the schedule."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(next_check_at=T0 + 3_600), persist=False, now=T0)
    before = cache.peek(DOMAIN)
    assert before is not None
    answer = before.answer(PROFILE)
    cache.put(cached(next_check_at=T0 + 7_200), persist=False, now=T0 + 3_600)
    after = cache.peek(DOMAIN)
    assert isinstance(after, HotPolicy)
    assert answer is after.answer(PROFILE)
    assert T0 + 7_200 == after.entry.next_check_at


@pytest.mark.parametrize("shift", [1_000.0, -1_000.0], ids=["later-fetch", "earlier-fetch"])
def test_put_of_same_policy_with_other_fetch_time_serves_until_that_entrys_expiry(
    shift: float,
) -> None:
    """RFC 8461 section 3.2: ``max_age`` counts from the fetch of the entry now current.

    When ``put`` makes an entry current, the served expiry (``HotPolicy.expires_at``,
    what the lookup path checks) must be that entry's, even when the rendered answers
    are kept because the policy object is the same.  Otherwise a policy can be served
    past ``fetched_at + max_age`` (earlier fetch) or dropped too soon (later fetch).
    """
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(fetched_at=T0), persist=False, now=T0)
    other = cached(fetched_at=T0 + shift, next_check_at=T0 + 4_600)
    cache.put(other, persist=False, now=T0 + 1_000)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    assert other.expires_at == hot.expires_at


def test_put_of_new_policy_renders_the_new_policy() -> None:
    """A newly fetched policy replaces the old one's answers (section 3.3)."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(POLICY), persist=False, now=T0)
    old = cache.peek(DOMAIN)
    assert old is not None
    old.answer(PROFILE)
    cache.put(cached(OTHER_POLICY), persist=False, now=T0 + 10)
    new = cache.peek(DOMAIN)
    assert new is not None
    assert render_policy(DOMAIN, OTHER_POLICY, PROFILE) == new.answer(PROFILE)


def test_put_of_equal_but_distinct_policy_object_renders_anew() -> None:
    """Only the identical policy object keeps its answers; a fresh fetch is rendered."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(POLICY), persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    first = hot.answer(PROFILE)
    twin = StsPolicy(POLICY.mode, POLICY.max_age, POLICY.mx, POLICY.text)
    cache.put(cached(twin), persist=False, now=T0)
    again = cache.peek(DOMAIN)
    assert again is not None
    assert first == again.answer(PROFILE)
    assert first is not again.answer(PROFILE)


@pytest.mark.parametrize("policy", [POLICY, OTHER_POLICY], ids=["same-policy", "new-policy"])
def test_last_used_is_preserved_across_put(policy: StsPolicy) -> None:
    """A resolution is not a use: idle ageing (refresher) must still see the last lookup."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(POLICY), persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    hot.last_used = T0 + 50  # a lookup
    cache.put(cached(policy), persist=False, now=T0 + 900)
    after = cache.peek(DOMAIN)
    assert after is not None
    assert T0 + 50 == after.last_used


def test_first_put_marks_the_entry_used_now() -> None:
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0 + 5)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    assert T0 + 5 == hot.last_used


def test_put_writes_to_the_store_only_when_persist() -> None:
    """Only a changed policy needs a durable write."""
    store = RecordingStore()
    cache = PolicyCache(store, 10)
    first = cached(next_check_at=T0 + 1)
    cache.put(first, persist=True, now=T0)
    cache.put(cached(next_check_at=T0 + 2), persist=False, now=T0)
    assert [first] == store.saved


def test_remove_drops_the_entry() -> None:
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0)
    cache.remove(DOMAIN, persist=False)
    assert None is cache.peek(DOMAIN)
    assert 0 == len(cache)


@pytest.mark.parametrize(("persist", "deleted"), [(True, [DOMAIN]), (False, [])])
def test_remove_deletes_from_the_store_only_when_persist(persist: bool, deleted: list[str]) -> None:
    store = RecordingStore()
    cache = PolicyCache(store, 10)
    cache.put(cached(), persist=False, now=T0)
    cache.remove(DOMAIN, persist=persist)
    assert deleted == store.deleted


def test_remove_of_unknown_domain_is_harmless() -> None:
    cache = PolicyCache(VolatileStore(), 10)
    cache.remove("unknown.example", persist=False)
    assert 0 == len(cache)


def test_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    """A lookup marks its entry used (``last_used``); the least recently used goes first."""
    cache = PolicyCache(VolatileStore(), 2)
    for name in ("a.example", "b.example"):
        cache.put(CachedPolicy(name, "1", POLICY, T0, T0 + 1), persist=False, now=T0)
    used = cache.peek("a.example")
    assert used is not None
    used.last_used = T0 + 5  # what PolicyService.lookup does on a cache hit
    cache.put(CachedPolicy("c.example", "1", POLICY, T0, T0 + 1), persist=False, now=T0)
    assert 2 == len(cache)
    assert None is cache.peek("b.example")
    assert cache.peek("a.example") is not None
    assert cache.peek("c.example") is not None


# --- PolicyCache: negative entries --------------------------------------------------------


def test_negative_entry_answers_not_found_for_every_profile() -> None:
    """RFC 8461 section 5: no policy means Postfix applies its default (NOTFOUND)."""
    cache = PolicyCache(VolatileStore(), 10)
    negative = negative_entry(DOMAIN, NXDOMAIN, 0, now=T0, intervals=INTERVALS)
    cache.put_negative(negative, now=T0)
    hot = cache.peek(DOMAIN)
    assert isinstance(hot, HotNegative)
    assert NOTFOUND == hot.answer(PROFILE)
    assert NOTFOUND == hot.answer(TLSRPT)
    assert negative.until == hot.expires_at


def test_negative_lookup_returns_the_negative_entry() -> None:
    """The failure count survives in memory for the next backoff."""
    cache = PolicyCache(VolatileStore(), 10)
    negative = negative_entry(DOMAIN, SERVFAIL, 2, now=T0, intervals=INTERVALS)
    cache.put_negative(negative, now=T0)
    assert negative == cache.negative(DOMAIN)
    assert None is cache.get(DOMAIN)


def test_negative_is_none_for_a_policy_or_an_unknown_domain() -> None:
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0)
    assert None is cache.negative(DOMAIN)
    assert None is cache.negative("unknown.example")


def test_negative_entries_never_reach_the_store() -> None:
    """Negative entries live in memory only."""
    store = RecordingStore()
    cache = PolicyCache(store, 10)
    cache.put_negative(negative_entry(DOMAIN, NXDOMAIN, 0, now=T0, intervals=INTERVALS), now=T0)
    assert ([], []) == (store.saved, store.deleted)


def test_policy_replaces_negative_entry_keeping_last_used() -> None:
    """A domain that starts publishing a policy gets it; its use history carries over."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put_negative(negative_entry(DOMAIN, NXDOMAIN, 0, now=T0, intervals=INTERVALS), now=T0)
    negative = cache.peek(DOMAIN)
    assert negative is not None
    negative.last_used = T0 + 20
    cache.put(cached(), persist=False, now=T0 + 100)
    hot = cache.peek(DOMAIN)
    assert isinstance(hot, HotPolicy)
    assert T0 + 20 == hot.last_used
    assert None is cache.negative(DOMAIN)


def test_negative_replaces_policy_keeping_last_used() -> None:
    """When a policy is dropped the negative entry takes its place in memory."""
    cache = PolicyCache(VolatileStore(), 10)
    cache.put(cached(), persist=False, now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    hot.last_used = T0 + 30
    cache.put_negative(
        negative_entry(DOMAIN, NXDOMAIN, 0, now=T0 + 100, intervals=INTERVALS), now=T0 + 100
    )
    negative = cache.peek(DOMAIN)
    assert isinstance(negative, HotNegative)
    assert T0 + 30 == negative.last_used
    assert NOTFOUND == negative.answer(PROFILE)


def test_first_negative_marks_the_entry_used_now() -> None:
    cache = PolicyCache(VolatileStore(), 10)
    cache.put_negative(negative_entry(DOMAIN, NXDOMAIN, 0, now=T0, intervals=INTERVALS), now=T0)
    hot = cache.peek(DOMAIN)
    assert hot is not None
    assert T0 == hot.last_used
