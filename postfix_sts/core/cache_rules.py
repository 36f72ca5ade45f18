"""Policy caching rules, RFC 8461 sections 3.3 and 5.1, as pure functions of ``now``.

The service runs one *resolution* of a domain as two steps and asks this module
what each step means for the cached policy:

1. :func:`after_discovery` with the TXT outcome: serve the cached policy as it is,
   give up, or :class:`Fetch` a new policy.
2. :func:`after_fetch` with the fetch outcome.

Rules (section numbers of RFC 8461):

* A policy is served until ``fetched_at + max_age`` (section 3.2 ``max_age``: "from
  the last policy fetch"), never after; an unchanged TXT id does not extend it
  (checklist #96, docs/rfc-decisions.md).
* A fetched valid policy replaces the cached one only when the TXT id differs
  from the cached one's, or the cached one has expired (section 3.3, section 5.1).
  ``mode: none`` is such a policy and ends enforcement (section 5, item 3).
* When the TXT lookup fails, the TXT record disappears or turns invalid, the fetch
  fails, or the new policy is invalid, an unexpired cached policy stays in force
  (section 3.3 "Conversely", section 5.1 step 3, section 10.2).
* The TXT record is re-checked after ``recheck`` seconds, not on every query;
  after a failure, after ``retry`` seconds (section 3.3 asks not to refetch the
  same id more often than every five minutes).
* A policy is fetched again, even for an unchanged id, once it is older than
  half its ``max_age`` or one day, whichever is sooner (section 3.3, last
  paragraph: "refresh cached policies before they expire ... once per day").
  So a policy in use is renewed long before it expires, and a failed refresh
  leaves it in force.  The refreshed policy replaces the cached one, so a
  publisher who switched to ``mode: none`` without a new id is honoured no later
  than a sender without a cache would honour it.
* A domain without a policy is remembered as a :class:`NegativeEntry`: an
  authoritative "no policy" for its DNS negative TTL (RFC 2308 section 5: the
  SOA minimum rule) kept within configured bounds; a failure with nothing cached
  for a backoff that doubles with each consecutive failure, so an outage of one
  remote server does not make every delivery wait for the fetch deadline.
"""

from dataclasses import dataclass

from postfix_sts.core.sts_policy import Mode, StsPolicy
from postfix_sts.core.sts_txt import StsRecord

#: RFC 8461 section 3.3: "a suggested refresh frequency is once per day".
REFRESH_AFTER = 86_400.0


@dataclass(frozen=True, slots=True)
class CachedPolicy:
    """A policy as cached: what was fetched, for which TXT id, and when to look again."""

    domain: str
    policy_id: str
    policy: StsPolicy
    fetched_at: float
    next_check_at: float

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age

    def servable(self, now: float) -> bool:
        """Unexpired: RFC 8461 section 3.2 ``max_age`` counted from the fetch."""
        return now < self.fetched_at + self.policy.max_age

    @property
    def refresh_at(self) -> float:
        """When the policy should be fetched again even if its id is unchanged."""
        return self.fetched_at + min(self.policy.max_age / 2, REFRESH_AFTER)


@dataclass(frozen=True, slots=True)
class Intervals:
    """Seconds: ``recheck`` between TXT checks, ``retry`` after a failure while a
    policy is cached; ``negative_min``/``negative_max`` bound how long "no policy"
    is remembered; ``backoff_min``/``backoff_max`` bound the failure backoff."""

    recheck: float
    retry: float
    negative_min: float = 60.0
    negative_max: float = 3600.0
    backoff_min: float = 60.0
    backoff_max: float = 900.0


@dataclass(frozen=True, slots=True)
class NoRecord:
    """The domain publishes no usable STS TXT record (absent, invalid, or several).

    ``ttl`` is how long DNS says this answer holds: the negative TTL of an
    NXDOMAIN/NODATA answer or the TTL of the TXT RRset.
    """

    reason: str
    detail: str
    ttl: float = 0.0


@dataclass(frozen=True, slots=True)
class Failure:
    """A step failed in a way that says nothing about the domain's policy."""

    reason: str
    detail: str


Discovery = StsRecord | NoRecord | Failure


@dataclass(frozen=True, slots=True)
class Fetch:
    """The policy for ``record`` must be fetched."""

    record: StsRecord


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of a resolution.

    ``entry`` is what to serve from now on (``None``: no policy).  ``persist`` is
    true when the durable copy must change (a new policy, or one dropped);
    a changed ``next_check_at`` alone needs no disk write.  ``cause`` is what went
    wrong or disappeared: why there is no policy, or why the cached one was kept.
    """

    entry: CachedPolicy | None
    reason: str
    detail: str
    persist: bool
    cause: "NoRecord | Failure | None" = None


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    """ "No policy" remembered until ``until``; ``failures`` counts consecutive failures."""

    domain: str
    until: float
    failures: int
    reason: str


def negative_entry(
    domain: str,
    cause: "NoRecord | Failure",
    previous_failures: int,
    *,
    now: float,
    intervals: Intervals,
) -> NegativeEntry:
    """How long to answer "no policy" without asking DNS or HTTPS again."""
    if isinstance(cause, NoRecord):
        hold = min(max(cause.ttl, intervals.negative_min), intervals.negative_max)
        return NegativeEntry(domain, now + hold, 0, cause.reason)
    failures = previous_failures + 1
    hold = min(intervals.backoff_min * 2 ** min(failures - 1, 32), intervals.backoff_max)
    return NegativeEntry(domain, now + hold, failures, cause.reason)


def after_discovery(
    cached: CachedPolicy | None, discovery: Discovery, *, now: float, intervals: Intervals
) -> Fetch | Outcome:
    """What the TXT lookup outcome means for the cached policy (sections 3.3, 5.1)."""
    live = cached if cached is not None and cached.servable(now) else None
    if isinstance(discovery, StsRecord):
        if live is not None and live.policy_id == discovery.id and now < live.refresh_at:
            detail = f"TXT id {discovery.id} unchanged"
            return _keep(live, now, intervals.recheck, "id-unchanged", detail)
        return Fetch(discovery)
    if live is None:
        return Outcome(
            None, discovery.reason, discovery.detail, persist=cached is not None, cause=discovery
        )
    interval = intervals.recheck if isinstance(discovery, NoRecord) else intervals.retry
    detail = f"{discovery.detail}; cached policy id {live.policy_id} stays in force"
    return _keep(live, now, interval, f"cached-kept-{discovery.reason}", detail, cause=discovery)


def after_fetch(
    domain: str,
    cached: CachedPolicy | None,
    record: StsRecord,
    fetched: StsPolicy | Failure,
    *,
    now: float,
    intervals: Intervals,
) -> Outcome:
    """What the fetch outcome means for the cached policy (sections 3.3, 5.1)."""
    if isinstance(fetched, StsPolicy):
        entry = CachedPolicy(domain, record.id, fetched, fetched_at=now, next_check_at=now)
        refreshed = cached is not None and cached.policy_id == record.id
        return Outcome(
            _with_next_check(entry, now, intervals.recheck),
            "refreshed" if refreshed else "fetched",
            f"policy id {record.id} mode {fetched.mode.value}",
            persist=True,
        )
    live = cached if cached is not None and cached.servable(now) else None
    if live is None:
        return Outcome(
            None, fetched.reason, fetched.detail, persist=cached is not None, cause=fetched
        )
    detail = f"{fetched.detail}; cached policy id {live.policy_id} stays in force"
    return _keep(live, now, intervals.retry, f"cached-kept-{fetched.reason}", detail, cause=fetched)


def _keep(
    entry: CachedPolicy,
    now: float,
    interval: float,
    reason: str,
    detail: str,
    *,
    cause: NoRecord | Failure | None = None,
) -> Outcome:
    entry = _with_next_check(entry, now, interval)
    return Outcome(entry, reason, detail, persist=False, cause=cause)


def transition(cached: CachedPolicy | None, outcome: Outcome, now: float) -> str | None:
    """A change to an enforced policy that an operator should hear about, if any.

    ``enforce-to-none`` / ``enforce-to-testing``: the domain relaxed its policy;
    ``id-changed``: a new enforce policy replaced the old one; ``txt-disappeared``:
    the TXT record vanished or broke while the policy is cached, which is what a
    downgrade attacker blocking DNS looks like (the cached policy stays in force).
    """
    if cached is None or not cached.servable(now) or cached.policy.mode is not Mode.ENFORCE:
        return None
    new = outcome.entry
    if new is None:
        return None
    if new.policy is cached.policy:
        return "txt-disappeared" if isinstance(outcome.cause, NoRecord) else None
    if new.policy.mode is Mode.NONE:
        return "enforce-to-none"
    if new.policy.mode is Mode.TESTING:
        return "enforce-to-testing"
    return "id-changed" if new.policy_id != cached.policy_id else None


def _with_next_check(entry: CachedPolicy, now: float, interval: float) -> CachedPolicy:
    """``entry`` re-checked ``interval`` seconds from ``now``, or when its refresh falls
    due if that comes first (a refresh already overdue waits for ``interval``)."""
    next_check_at = now + interval
    if now < entry.refresh_at < next_check_at:
        next_check_at = entry.refresh_at
    return CachedPolicy(
        entry.domain, entry.policy_id, entry.policy, entry.fetched_at, next_check_at
    )
