"""Policy caching rules, RFC 8461 sections 3.2, 3.3 and 5.1 (checklist section 4, #84-#93, #96).

Every function is pure in ``now``: the tests pass explicit times and hit the exact
``fetched_at + max_age`` boundary (#92).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.clock import ManualClock
from postfix_sts.core.cache_rules import (
    CachedPolicy,
    Failure,
    Fetch,
    Intervals,
    NoRecord,
    Outcome,
    after_discovery,
    after_fetch,
)
from postfix_sts.core.sts_policy import Mode, StsPolicy
from postfix_sts.core.sts_txt import StsRecord

DOMAIN = "example.com"
T0 = 1_700_000_000.0
MAX_AGE = 86_400
INTERVALS = Intervals(recheck=3_600.0, retry=300.0)

POLICY_1 = StsPolicy(Mode.ENFORCE, MAX_AGE, ("mx1.example.com",), "p1")
POLICY_2 = StsPolicy(Mode.ENFORCE, 604_800, ("mx2.example.com", "*.example.net"), "p2")
POLICY_NONE = StsPolicy(Mode.NONE, 604_800, (), "none")

RECORD_1 = StsRecord("1", "v=STSv1; id=1")
RECORD_2 = StsRecord("2", "v=STSv1; id=2")

NXDOMAIN = NoRecord("no-sts-record", "_mta-sts.example.com: NXDOMAIN")
SERVFAIL = Failure("dns", "SERVFAIL")
HTTP_404 = Failure("http-status", "HTTP 404")
INVALID_BODY = Failure("invalid-policy", "line 2: mode 'doubt' is not enforce, testing or none")


def cached(
    policy: StsPolicy = POLICY_1,
    policy_id: str = "1",
    fetched_at: float = T0,
    next_check_at: float | None = None,
) -> CachedPolicy:
    """A cached policy fetched at ``fetched_at`` (T0 by default)."""
    if next_check_at is None:
        next_check_at = fetched_at + INTERVALS.recheck
    return CachedPolicy(DOMAIN, policy_id, policy, fetched_at, next_check_at)


def discover(
    entry: CachedPolicy | None, discovery: StsRecord | NoRecord | Failure, now: float
) -> Fetch | Outcome:
    return after_discovery(entry, discovery, now=now, intervals=INTERVALS)


def fetched(
    entry: CachedPolicy | None,
    record: StsRecord,
    result: StsPolicy | Failure,
    now: float,
) -> Outcome:
    return after_fetch(DOMAIN, entry, record, result, now=now, intervals=INTERVALS)


def outcome_of(result: Fetch | Outcome) -> Outcome:
    """The Outcome of a discovery step that must not ask for a fetch."""
    assert isinstance(result, Outcome), f"expected an Outcome, got {result!r}"
    return result


def kept(entry: CachedPolicy, next_check_at: float) -> CachedPolicy:
    """``entry`` kept as it is, only its next TXT check moved."""
    return CachedPolicy(
        entry.domain, entry.policy_id, entry.policy, entry.fetched_at, next_check_at
    )


# --- expiry clock (#92) -----------------------------------------------------------------


def test_policy_is_servable_until_one_second_before_max_age() -> None:
    """#92: valid until fetched_at + max_age."""
    assert cached().servable(T0 + MAX_AGE - 1)


def test_policy_is_expired_at_exactly_fetched_at_plus_max_age() -> None:
    """#92: at fetched_at + max_age the policy is no longer servable."""
    assert not cached().servable(T0 + MAX_AGE)


def test_policy_is_servable_at_its_fetch_time() -> None:
    assert cached().servable(T0)


def test_expires_at_is_fetched_at_plus_max_age() -> None:
    """#92: RFC 8461 section 3.2, max_age "from the last policy fetch time"."""
    assert T0 + MAX_AGE == cached().expires_at


def test_expiry_with_a_manual_clock() -> None:
    """#92 via clock.ManualClock: the service's view of the same boundary."""
    clock = ManualClock(start=T0)
    entry = cached(fetched_at=clock.now())
    clock.advance(MAX_AGE - 1)
    assert entry.servable(clock.now())
    clock.advance(1)
    assert not entry.servable(clock.now())


# --- TXT id unchanged (#84, #96) --------------------------------------------------------


def test_unchanged_id_needs_no_fetch_and_moves_next_check_by_recheck() -> None:
    """#84: cache hit with the same id: serve P, no HTTPS fetch (RFC 8461 section 3, 5.1)."""
    entry = cached()
    now = T0 + 5_000
    outcome = outcome_of(discover(entry, RECORD_1, now))
    assert kept(entry, now + INTERVALS.recheck) == outcome.entry
    assert not outcome.persist


def test_unchanged_id_does_not_extend_the_policy_lifetime() -> None:
    """#96 [AMBIG]: cache_rules.py docstring: max_age counts from the last fetch only."""
    entry = cached()
    outcome = outcome_of(discover(entry, RECORD_1, T0 + 100))
    assert outcome.entry is not None
    assert T0 == outcome.entry.fetched_at
    assert T0 + MAX_AGE == outcome.entry.expires_at


@pytest.mark.parametrize(
    ("max_age", "refresh_after"),
    [(86_400, 43_200.0), (31_557_600, 86_400.0), (600, 300.0)],
)
def test_policy_in_use_is_refetched_after_half_its_max_age_or_a_day(
    max_age: int, refresh_after: float
) -> None:
    """#94: RFC 8461 section 3.3 last paragraph: refresh before expiry, about daily."""
    entry = cached(policy=StsPolicy(Mode.ENFORCE, max_age, ("mx1.example.com",), "p"))
    assert isinstance(discover(entry, RECORD_1, T0 + refresh_after - 1), Outcome)
    assert Fetch(RECORD_1) == discover(entry, RECORD_1, T0 + refresh_after)


def test_recheck_is_scheduled_no_later_than_the_refresh() -> None:
    """A short max_age brings the next check forward to its refresh time."""
    entry = cached(policy=StsPolicy(Mode.ENFORCE, 600, ("mx1.example.com",), "p"))
    outcome = outcome_of(discover(entry, RECORD_1, T0 + 10))
    assert outcome.entry is not None
    assert T0 + 300 == outcome.entry.next_check_at


def test_refetch_with_the_same_id_is_reported_as_a_refresh() -> None:
    outcome = after_fetch(
        DOMAIN, cached(), RECORD_1, POLICY_1, now=T0 + 50_000, intervals=INTERVALS
    )
    assert "refreshed" == outcome.reason
    assert outcome.entry is not None
    assert T0 + 50_000 == outcome.entry.fetched_at


def test_failed_refresh_keeps_the_policy_and_waits_retry_not_zero() -> None:
    """A refresh already overdue must not make every query re-check (no stampede)."""
    now = T0 + 50_000  # past refresh_at (T0 + 43_200), before expiry
    outcome = after_fetch(DOMAIN, cached(), RECORD_1, HTTP_404, now=now, intervals=INTERVALS)
    assert outcome.entry is not None
    assert T0 == outcome.entry.fetched_at
    assert now + INTERVALS.retry == outcome.entry.next_check_at


def test_unchanged_id_on_an_expired_policy_triggers_a_fetch() -> None:
    """#92, #96: an expired policy is not revived by an unchanged id; it is fetched again."""
    assert Fetch(RECORD_1) == discover(cached(), RECORD_1, T0 + MAX_AGE)


# --- TXT id changed (#85-#87, #90, #91) -------------------------------------------------


def test_changed_id_asks_for_a_fetch() -> None:
    """#85: RFC 8461 section 5.1: a new id means a new policy must be fetched."""
    assert Fetch(RECORD_2) == discover(cached(), RECORD_2, T0 + 100)


def test_valid_record_with_nothing_cached_asks_for_a_fetch() -> None:
    """RFC 8461 section 5.1 step 1: no cached policy -> fetch."""
    assert Fetch(RECORD_1) == discover(None, RECORD_1, T0)


def test_successful_fetch_replaces_the_cached_policy() -> None:
    """#85: the new policy replaces the old one before the old one expires."""
    now = T0 + 100
    outcome = fetched(cached(), RECORD_2, POLICY_2, now)
    expected = CachedPolicy(DOMAIN, "2", POLICY_2, now, now + INTERVALS.recheck)
    assert expected == outcome.entry
    assert outcome.persist


def test_replaced_policy_expires_from_the_new_fetch_time() -> None:
    """#85, #92: the new policy's max_age counts from its own fetch."""
    now = T0 + 100
    outcome = fetched(cached(), RECORD_2, POLICY_2, now)
    assert outcome.entry is not None
    assert now + POLICY_2.max_age == outcome.entry.expires_at


@pytest.mark.parametrize("failure", [HTTP_404, SERVFAIL, Failure("timeout", "60 s")])
def test_failed_fetch_keeps_the_cached_policy_and_moves_next_check_by_retry(
    failure: Failure,
) -> None:
    """#86 [MUST]: RFC 8461 section 3.3 "Conversely": the unexpired cached policy applies."""
    entry = cached()
    now = T0 + 100
    outcome = fetched(entry, RECORD_2, failure, now)
    assert kept(entry, now + INTERVALS.retry) == outcome.entry
    assert not outcome.persist


def test_failed_fetch_with_expired_policy_leaves_no_policy() -> None:
    """#87: the cached policy is past max_age; a failed fetch means NOTFOUND."""
    outcome = fetched(cached(), RECORD_2, HTTP_404, T0 + MAX_AGE)
    assert outcome.entry is None


def test_failed_fetch_one_second_before_expiry_keeps_the_policy() -> None:
    """#86, #92: boundary: still servable, so still kept."""
    entry = cached()
    now = T0 + MAX_AGE - 1
    assert kept(entry, now + INTERVALS.retry) == fetched(entry, RECORD_2, HTTP_404, now).entry


def test_expired_policy_dropped_after_failed_fetch_must_be_persisted() -> None:
    """cache_rules.Outcome: dropping a policy changes the durable copy."""
    assert fetched(cached(), RECORD_2, HTTP_404, T0 + MAX_AGE).persist


def test_mode_none_policy_replaces_an_enforce_policy() -> None:
    """#90: RFC 8461 section 5 item 3, 8.3: opting out via ``mode: none`` takes effect at once."""
    now = T0 + 100
    outcome = fetched(cached(), RECORD_2, POLICY_NONE, now)
    assert CachedPolicy(DOMAIN, "2", POLICY_NONE, now, now + INTERVALS.recheck) == outcome.entry
    assert outcome.persist


def test_mode_none_policy_is_cached_for_its_max_age() -> None:
    """#90: the none policy is cached for its own max_age."""
    now = T0 + 100
    outcome = fetched(cached(), RECORD_2, POLICY_NONE, now)
    assert outcome.entry is not None
    assert outcome.entry.servable(now + POLICY_NONE.max_age - 1)
    assert not outcome.entry.servable(now + POLICY_NONE.max_age)


def test_invalid_new_policy_keeps_the_cached_policy() -> None:
    """#91: RFC 8461 section 3.3: an invalid new body does not replace a valid cached one."""
    entry = cached()
    now = T0 + 100
    outcome = fetched(entry, RECORD_2, INVALID_BODY, now)
    assert kept(entry, now + INTERVALS.retry) == outcome.entry
    assert not outcome.persist


# --- TXT record gone or unreadable (#88, #89) -------------------------------------------


@pytest.mark.parametrize(
    "no_record",
    [
        NXDOMAIN,
        NoRecord("multiple-sts-records", "2 TXT records begin with v=STSv1"),
        NoRecord("txt-invalid", "STS TXT record does not match RFC 8461 syntax"),
    ],
)
def test_missing_txt_record_keeps_a_live_cached_policy(no_record: NoRecord) -> None:
    """#88 [MUST]: RFC 8461 section 3.1 note, 5.1: keep enforcing P until it expires."""
    entry = cached()
    now = T0 + 5_000
    outcome = outcome_of(discover(entry, no_record, now))
    assert kept(entry, now + INTERVALS.recheck) == outcome.entry
    assert not outcome.persist


def test_txt_lookup_failure_keeps_a_live_cached_policy_and_retries_sooner() -> None:
    """#86/#88: RFC 8461 section 3.3: a DNS failure is no reason to drop P; retry later."""
    entry = cached()
    now = T0 + 5_000
    outcome = outcome_of(discover(entry, SERVFAIL, now))
    assert kept(entry, now + INTERVALS.retry) == outcome.entry
    assert not outcome.persist


@pytest.mark.parametrize("discovery", [NXDOMAIN, SERVFAIL])
def test_missing_txt_record_with_expired_policy_leaves_no_policy(
    discovery: NoRecord | Failure,
) -> None:
    """#89: the cached policy is past max_age and the TXT is gone -> NOTFOUND."""
    outcome = outcome_of(discover(cached(), discovery, T0 + MAX_AGE))
    assert outcome.entry is None
    assert outcome.persist


@pytest.mark.parametrize("discovery", [NXDOMAIN, SERVFAIL])
def test_missing_txt_record_one_second_before_expiry_keeps_the_policy(
    discovery: NoRecord | Failure,
) -> None:
    """#88, #92: boundary."""
    outcome = outcome_of(discover(cached(), discovery, T0 + MAX_AGE - 1))
    assert outcome.entry is not None
    assert POLICY_1 == outcome.entry.policy


def test_policy_with_max_age_1_and_old_timestamp_is_not_served() -> None:
    """#89: SNA's case: cached P with max_age 1 fetched at 0, TXT absent -> NOTFOUND."""
    entry = cached(policy=StsPolicy(Mode.ENFORCE, 1, ("mx.example",), ""), fetched_at=0.0)
    assert outcome_of(discover(entry, NXDOMAIN, T0)).entry is None


# --- nothing cached (#93) ---------------------------------------------------------------


@pytest.mark.parametrize("failure", [HTTP_404, INVALID_BODY])
def test_failed_fetch_with_nothing_cached_leaves_no_policy(failure: Failure) -> None:
    """#93 [MUST]: deliver as though the domain had not implemented MTA-STS."""
    outcome = fetched(None, RECORD_1, failure, T0)
    assert outcome.entry is None
    assert not outcome.persist


@pytest.mark.parametrize("discovery", [NXDOMAIN, SERVFAIL])
def test_no_record_with_nothing_cached_leaves_no_policy(discovery: NoRecord | Failure) -> None:
    """#26, #27: no record and nothing cached -> NOTFOUND, nothing to persist."""
    outcome = outcome_of(discover(None, discovery, T0))
    assert outcome.entry is None
    assert not outcome.persist


def test_first_fetch_caches_the_policy() -> None:
    """#93 counterpart: nothing cached, fetch succeeds -> the policy is cached and persisted."""
    outcome = fetched(None, RECORD_1, POLICY_1, T0)
    assert CachedPolicy(DOMAIN, "1", POLICY_1, T0, T0 + INTERVALS.recheck) == outcome.entry
    assert outcome.persist


def test_outcome_reason_is_a_label() -> None:
    """errors.py: reasons are short labels, passed on from the failure."""
    assert "http-status" == fetched(None, RECORD_1, HTTP_404, T0).reason


# --- properties -------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
discoveries = st.sampled_from([RECORD_1, RECORD_2, NXDOMAIN, SERVFAIL])
fetch_results = st.sampled_from([POLICY_1, POLICY_2, POLICY_NONE, HTTP_404, INVALID_BODY])


@given(st.one_of(st.none(), st.builds(cached, fetched_at=times)), discoveries, times)
def test_discovery_never_serves_an_expired_policy(
    entry: CachedPolicy | None, discovery: StsRecord | NoRecord | Failure, now: float
) -> None:
    """#87, #89, #92: a kept entry is always servable at ``now`` and never changes its policy."""
    result = discover(entry, discovery, now)
    if isinstance(result, Outcome) and result.entry is not None:
        assert entry is not None
        assert result.entry.servable(now)
        assert (entry.policy_id, entry.policy, entry.fetched_at) == (
            result.entry.policy_id,
            result.entry.policy,
            result.entry.fetched_at,
        )
        assert result.entry.next_check_at > now


@given(
    st.one_of(st.none(), st.builds(cached, fetched_at=times)),
    st.sampled_from([RECORD_1, RECORD_2]),
    fetch_results,
    times,
)
def test_fetch_outcome_is_the_new_policy_or_a_live_cached_one(
    entry: CachedPolicy | None,
    record: StsRecord,
    result: StsPolicy | Failure,
    now: float,
) -> None:
    """#85, #86, #87, #91, #93: a valid fetch always wins; otherwise only a live policy stays."""
    outcome = fetched(entry, record, result, now)
    if isinstance(result, StsPolicy):
        assert outcome.entry is not None
        assert (record.id, result, now) == (
            outcome.entry.policy_id,
            outcome.entry.policy,
            outcome.entry.fetched_at,
        )
    elif entry is not None and entry.servable(now):
        assert kept(entry, now + INTERVALS.retry) == outcome.entry
    else:
        assert outcome.entry is None
