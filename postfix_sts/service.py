"""The lookup path: key → hot cache → (single-flight) resolution → answer.

:meth:`StsService.lookup` is what the servers call.  It returns an :class:`Answer`
at once when the hot cache can answer (no await, no task), else a task that
resolves the domain.  Concurrent lookups of one domain share one resolution.

A resolution (:meth:`StsService.resolve`) is the I/O glue around the pure rules of
:mod:`postfix_sts.core.cache_rules`: TXT lookup, maybe an HTTPS fetch, then the
cache update (a policy, or a negative entry remembering "no policy").  It never
raises for DNS/HTTPS trouble: failures are values with a reason, logged once per
resolution.  Cached policies in use are re-checked in the background by
:class:`postfix_sts.refresher.Refresher`, never on the lookup path.
"""

import asyncio
import logging
import random
from dataclasses import dataclass

from postfix_sts.cache.hot import PolicyCache
from postfix_sts.clock import Clock
from postfix_sts.core.answer import NOTFOUND, Answer, temp
from postfix_sts.core.cache_rules import (
    CachedPolicy,
    Discovery,
    Failure,
    Intervals,
    NoRecord,
    Outcome,
    after_discovery,
    after_fetch,
    negative_entry,
    transition,
)
from postfix_sts.core.query import NotADomain, normalize_key
from postfix_sts.core.render import Profile, render_policy
from postfix_sts.core.sts_policy import StsPolicy, parse_policy
from postfix_sts.core.sts_txt import select_sts_record
from postfix_sts.dns_client import DnsClient, TxtAnswer
from postfix_sts.errors import DnsLookupError, FetchError, PolicySyntaxError, TxtRecordError
from postfix_sts.https_fetch import PolicyFetcher
from postfix_sts.metrics import Metrics
from postfix_sts.refresher import Refresher

log = logging.getLogger("postfix_sts")


@dataclass(frozen=True, slots=True)
class RefresherSettings:
    """Re-checks per second, seconds unused before a policy ages out, start-up spread."""

    rate: float = 10.0
    idle_limit: float = 7 * 86_400.0
    spread: float = 300.0


@dataclass(frozen=True, slots=True)
class Resolution:
    """Everything one resolution saw and decided, for the log and ``postfix-sts query``."""

    domain: str
    txt: TxtAnswer | None
    discovery: Discovery
    fetched: StsPolicy | Failure | None
    outcome: Outcome
    dns_seconds: float
    fetch_seconds: float | None

    @property
    def policy(self) -> CachedPolicy | None:
        return self.outcome.entry


class StsService:
    """MTA-STS lookups for the servers and the CLI."""

    def __init__(
        self,
        *,
        dns_client: DnsClient,
        fetcher: PolicyFetcher,
        cache: PolicyCache,
        intervals: Intervals,
        clock: Clock,
        refresher_settings: RefresherSettings,
        rng: random.Random,
        metrics: Metrics,
    ) -> None:
        self._metrics = metrics
        self._dns = dns_client
        self._fetcher = fetcher
        self._cache = cache
        self._intervals = intervals
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[Resolution]] = {}
        self.refresher = Refresher(
            cache=cache,
            refresh=self._refresh,
            metrics=metrics,
            clock=clock,
            rng=rng,
            rate=refresher_settings.rate,
            idle_limit=refresher_settings.idle_limit,
            spread=refresher_settings.spread,
        )

    def reconfigure(
        self,
        dns_client: DnsClient,
        fetcher: PolicyFetcher,
        intervals: Intervals,
        refresher_settings: RefresherSettings,
    ) -> None:
        """Use new DNS/HTTPS clients and timings from now on (config reload).

        Resolutions already running finish with the old ones.
        """
        self._dns = dns_client
        self._fetcher = fetcher
        self._intervals = intervals
        self.refresher.reconfigure(
            rate=refresher_settings.rate,
            idle_limit=refresher_settings.idle_limit,
            spread=refresher_settings.spread,
        )

    def start(self) -> int:
        """Load the durable cache into memory and schedule its re-checks."""
        now = self._clock.now()
        loaded = self._cache.load(now)
        self.refresher.schedule_loaded(loaded, now)
        return len(loaded)

    def lookup(self, profile: Profile, key: str) -> "Answer | asyncio.Task[Answer]":
        """Answer a Postfix query now if the hot cache can, else return a task that will.

        The hot path: normalise the key, one dictionary read, three clock reads.
        """
        started = self._clock.monotonic()
        domain = normalize_key(key)
        if isinstance(domain, NotADomain):
            self._metrics.lookup(NOTFOUND.kind, profile.name, "key", 0.0)
            return NOTFOUND
        hot = self._cache.peek(domain)
        if hot is not None:
            now = self._clock.now()
            if now < hot.expires_at:
                hot.last_used = now
                answer = hot.answer(profile)
                seconds = self._clock.monotonic() - started
                self._metrics.lookup(answer.kind, profile.name, "cache", seconds)
                return answer
        return asyncio.get_running_loop().create_task(
            self._answer_after_resolution(domain, profile, started)
        )

    async def _answer_after_resolution(
        self, domain: str, profile: Profile, started: float
    ) -> Answer:
        try:
            resolution = await self.resolve(domain)
        except Exception:
            log.exception("lookup %s: internal error", domain)
            answer = temp("postfix-sts internal error, see its log")
        else:
            entry = resolution.outcome.entry
            answer = render_policy(domain, entry.policy, profile) if entry else NOTFOUND
        seconds = self._clock.monotonic() - started
        self._metrics.lookup(answer.kind, profile.name, "resolved", seconds)
        return answer

    async def _refresh(self, domain: str) -> str:
        """A background re-check; returns its outcome for the metrics."""
        resolution = await self.resolve(domain)
        outcome = resolution.outcome
        if outcome.entry is None:
            return "dropped"
        return "kept" if outcome.reason.startswith("cached-kept") else "ok"

    async def resolve(self, domain: str) -> Resolution:
        """Resolve ``domain`` now, sharing one resolution among concurrent callers."""
        shared = self._inflight.get(domain)
        if shared is not None:
            self._metrics.coalesced()
        else:
            shared = asyncio.ensure_future(self._resolve_and_store(domain))
            self._inflight[domain] = shared
            shared.add_done_callback(lambda _done: self._inflight.pop(domain, None))
        return await asyncio.shield(shared)

    async def _resolve_and_store(self, domain: str) -> Resolution:
        started = self._clock.monotonic()
        cached = self._cache.get(domain)
        resolution = await self._resolve(domain, cached)
        outcome = resolution.outcome
        now = self._clock.now()
        change = transition(cached, outcome, now)
        if change is not None:
            self._metrics.transition(change)
            log.warning("policy transition domain=%s kind=%s: %s", domain, change, outcome.detail)
        if outcome.entry is not None:
            self._cache.put(outcome.entry, persist=outcome.persist, now=now)
            self.refresher.schedule(domain, outcome.entry.next_check_at)
        else:
            if cached is not None:
                self._cache.remove(domain, persist=outcome.persist)
            if outcome.cause is not None:
                previous = self._cache.negative(domain)
                negative = negative_entry(
                    domain,
                    outcome.cause,
                    previous.failures if previous is not None else 0,
                    now=now,
                    intervals=self._intervals,
                )
                self._cache.put_negative(negative, now=now)
        _log_resolution(resolution, self._clock.monotonic() - started)
        return resolution

    async def _resolve(self, domain: str, cached: CachedPolicy | None) -> Resolution:
        t0 = self._clock.monotonic()
        txt, discovery = await self._discover(domain)
        t1 = self._clock.monotonic()
        step = after_discovery(cached, discovery, now=self._clock.now(), intervals=self._intervals)
        if isinstance(step, Outcome):
            return Resolution(domain, txt, discovery, None, step, t1 - t0, None)
        fetched = await self._fetch(domain)
        t2 = self._clock.monotonic()
        outcome = after_fetch(
            domain, cached, step.record, fetched, now=self._clock.now(), intervals=self._intervals
        )
        return Resolution(domain, txt, discovery, fetched, outcome, t1 - t0, t2 - t1)

    async def _discover(self, domain: str) -> tuple[TxtAnswer | None, Discovery]:
        """RFC 8461 section 3.1: the TXT record at ``_mta-sts.<domain>``."""
        name = f"_mta-sts.{domain}"
        try:
            txt = await self._dns.txt(name)
        except DnsLookupError as exc:
            return None, Failure(f"txt-{exc.reason}", exc.detail)
        if not txt.records:
            return txt, NoRecord("no-txt", f"TXT {name}: {txt.status}", txt.ttl)
        try:
            return txt, select_sts_record(txt.records)
        except TxtRecordError as exc:
            return txt, NoRecord(exc.reason, f"TXT {name}: {exc.detail}", txt.ttl)

    async def _fetch(self, domain: str) -> StsPolicy | Failure:
        """RFC 8461 sections 3.2 and 3.3: fetch and parse the policy."""
        try:
            policy = parse_policy(await self._fetcher.fetch(domain))
        except FetchError as exc:
            self._metrics.fetch(exc.reason)
            return Failure(f"fetch-{exc.reason}", exc.detail)
        except PolicySyntaxError as exc:
            self._metrics.fetch(exc.reason)
            return Failure(exc.reason, f"policy of {domain}: {exc.detail}")
        self._metrics.fetch("ok")
        return policy


def _log_resolution(resolution: Resolution, seconds: float) -> None:
    outcome = resolution.outcome
    entry = outcome.entry
    policy = "none" if entry is None else f"{entry.policy.mode.value} id={entry.policy_id}"
    level = logging.WARNING if outcome.reason.startswith("cached-kept") else logging.INFO
    log.log(
        level,
        "resolved domain=%s policy=%s reason=%s took=%.3fs detail=%s",
        resolution.domain,
        policy,
        outcome.reason,
        seconds,
        outcome.detail,
    )
