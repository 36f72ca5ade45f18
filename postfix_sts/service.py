"""The lookup path: key → hot cache → (single-flight) resolution → answer.

:meth:`PolicyService.lookup` is what the servers call.  It returns an :class:`Answer`
at once when the hot cache can answer (no await, no task), else a task that
resolves the domain.  Concurrent lookups of one domain share one resolution.

A resolution (:meth:`PolicyService.resolve`) is the I/O glue around the pure rules of
:mod:`postfix_sts.core.cache_rules`: TXT lookup, maybe an HTTPS fetch, then the
cache update (a policy, or a negative entry remembering "no policy").  It never
raises for DNS/HTTPS trouble: failures are values with a reason, logged once per
resolution.  Cached policies in use are re-checked in the background by
:class:`postfix_sts.refresher.Refresher`, never on the lookup path.
"""

import asyncio
import logging
import math
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from postfix_sts.cache.hot import HotEntry, PolicyCache
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
from postfix_sts.core.dane import DaneVerdict
from postfix_sts.core.query import NotADomain, normalize_key
from postfix_sts.core.render import Profile, render_dane, render_policy
from postfix_sts.core.sts_policy import StsPolicy, parse_policy
from postfix_sts.core.sts_txt import select_sts_record
from postfix_sts.dane_resolver import DaneReport, DaneResolver, ResolverValidation
from postfix_sts.dns_client import DnsClient, TxtAnswer
from postfix_sts.errors import DnsLookupError, FetchError, PolicySyntaxError, TxtRecordError
from postfix_sts.https_fetch import PolicyFetcher
from postfix_sts.metrics import Metrics
from postfix_sts.refresher import Refresher
from postfix_sts.single_flight import SingleFlight

log = logging.getLogger("postfix_sts")

#: Normalised keys remembered (the memo is emptied when full) ...
MEMO_KEYS = 16_384
#: ... for keys (and fast-path requests) up to this long: a hostile peer cannot
#: fill memory with long keys or map names.
MEMO_KEY_LENGTH = 255
#: Requests remembered by :meth:`PolicyService.fast_answer` (emptied when full).
FAST_ANSWERS = 16_384


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


class PolicyService:
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
        dane: DaneResolver | None = None,
        validation: ResolverValidation | None = None,
    ) -> None:
        self._metrics = metrics
        self._dane = dane
        self._validation = validation
        self._sts_flight: SingleFlight[Resolution] = SingleFlight(metrics.coalesced)
        self._dane_flight: SingleFlight[DaneReport] = SingleFlight(metrics.coalesced)
        self._dns = dns_client
        self._fetcher = fetcher
        self._cache = cache
        self._intervals = intervals
        self._clock = clock
        self._now = clock.now  # bound once: the hot path reads the clocks
        self._monotonic = clock.monotonic
        self._keys: dict[str, str | NotADomain] = {}
        self._fast: dict[bytes, tuple[int, float, Answer, str, HotEntry | None]] = {}
        self._tasks: set[asyncio.Task[object]] = set()
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
        if self._dane is not None and self._validation is not None:
            self._dane = DaneResolver(dns_client)
            self._validation.use(dns_client)
        self.refresher.reconfigure(
            rate=refresher_settings.rate,
            idle_limit=refresher_settings.idle_limit,
            spread=refresher_settings.spread,
        )

    def start(self) -> int:
        """Load the durable cache into memory and schedule its re-checks."""
        now = self._clock.now()
        loaded = self._cache.load(now)
        self._cache.load_dane(now)
        self.refresher.schedule_loaded(loaded, now)
        return len(loaded)

    def lookup(
        self, profile: Profile, key: str, raw: bytes = b""
    ) -> "Answer | asyncio.Task[Answer]":
        """Answer a Postfix query now if the hot cache can, else return a task that will.

        The hot path: normalise the key (memoised), two dictionary reads, three
        clock reads.  ``raw`` is the request as received; a cache answer is then
        remembered for :meth:`fast_answer`.
        """
        started = self._monotonic()
        domain = self._keys.get(key)
        if domain is None:
            domain = normalize_key(key)
            if len(key) <= MEMO_KEY_LENGTH:
                if len(self._keys) >= MEMO_KEYS:
                    self._keys.clear()
                self._keys[key] = domain
        if isinstance(domain, NotADomain):
            self._metrics.lookup(NOTFOUND.kind, profile.name, "key", 0.0)
            return NOTFOUND
        now = self._now()
        answer: Answer | None = None
        hot: HotEntry | None = None
        valid_until = math.inf
        if self._dane is not None:
            dane = self._cache.peek_dane(domain)
            if dane is None or now >= dane.expires_at:
                return self._resolve_later(domain, profile, started)
            # refreshed shortly before it expires, so a busy domain never waits for it
            valid_until = dane.refresh_at
            if now >= valid_until and domain not in self._dane_flight:
                self._background(self.explain_dane(domain))
            answer = dane.answer  # DANE takes precedence (RFC 8461 section 2)
        if answer is None:
            hot = self._cache.peek(domain)
            if hot is None or now >= hot.expires_at:
                return self._resolve_later(domain, profile, started)
            hot.last_used = now
            answer = hot.answer(profile)
            valid_until = min(valid_until, hot.expires_at)
        if raw and len(raw) <= MEMO_KEY_LENGTH and now < valid_until:
            if len(self._fast) >= FAST_ANSWERS:
                self._fast.clear()
            self._fast[raw] = (self._cache.generation, valid_until, answer, profile.name, hot)
        self._metrics.lookup(answer.kind, profile.name, "cache", self._monotonic() - started)
        return answer

    def fast_answer(self, raw: bytes) -> bytes | None:
        """The framed reply for a request answered from the cache before, if still valid.

        Valid while nothing in the hot cache has changed since (its generation)
        and no decision it came from has expired; the answer is counted like any
        cache answer.  Skips decoding, normalising and rendering.
        """
        hit = self._fast.get(raw)
        if hit is None:
            return None
        started = self._monotonic()
        generation, valid_until, answer, profile, hot = hit
        now = self._now()
        if generation != self._cache.generation or now >= valid_until:
            return None
        if hot is not None:
            hot.last_used = now  # keeps a busy policy refreshed (refresher's idle check)
        self._metrics.lookup(answer.kind, profile, "cache", self._monotonic() - started)
        return answer.socketmap_frame

    def _background(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _resolve_later(
        self, domain: str, profile: Profile, started: float
    ) -> "asyncio.Task[Answer]":
        return asyncio.get_running_loop().create_task(
            self._answer_after_resolution(domain, profile, started)
        )

    async def _answer_after_resolution(
        self, domain: str, profile: Profile, started: float
    ) -> Answer:
        try:
            answer = await self._resolve_answer(domain, profile)
        except Exception:
            log.exception("lookup %s: internal error", domain)
            answer = temp("postfix-sts internal error, see its log")
        seconds = self._clock.monotonic() - started
        self._metrics.lookup(answer.kind, profile.name, "resolved", seconds)
        return answer

    async def _resolve_answer(self, domain: str, profile: Profile) -> Answer:
        """DANE first; MTA-STS only where DANE does not apply (RFC 8461 section 2)."""
        if self._dane is not None:
            dane_answer = render_dane(await self.resolve_dane(domain))
            if dane_answer is not None:
                return dane_answer
        entry = (await self.resolve(domain)).outcome.entry
        return render_policy(domain, entry.policy, profile) if entry else NOTFOUND

    async def resolve_dane(self, domain: str) -> DaneVerdict:
        """The domain's DANE verdict, from the cache or resolved now (single-flight)."""
        cached = self._cache.peek_dane(domain)
        if cached is not None and self._clock.now() < cached.expires_at:
            return cached.verdict
        return (await self.explain_dane(domain)).verdict

    async def explain_dane(self, domain: str) -> DaneReport:
        """Resolve the DANE verdict now and cache it; the report says how it was reached."""
        return await self._dane_flight.run(domain, lambda: self._resolve_dane_and_store(domain))

    async def _resolve_dane_and_store(self, domain: str) -> DaneReport:
        if self._dane is None or self._validation is None:
            raise RuntimeError("DANE is disabled")
        started = self._clock.monotonic()
        report = await self._dane.resolve(domain, trust_ad=await self._validation.trusted())
        now = self._clock.now()
        self._cache.put_dane(domain, report.verdict, now + report.ttl, now)
        level = report.verdict.level.value if report.verdict.level else None
        log.log(
            logging.WARNING if report.verdict.temp else logging.INFO,
            "dane domain=%s answer=%s ttl=%ds took=%.3fs reason=%s",
            domain,
            level or ("TEMP" if report.verdict.temp else "none"),
            report.ttl,
            self._clock.monotonic() - started,
            report.verdict.reason,
        )
        return report

    async def run_validation(self) -> None:
        """The resolver's DNSSEC self-check, now and periodically (DANE only)."""
        if self._validation is not None:
            await self._validation.run()

    async def check_validation(self) -> tuple[bool, str]:
        """Run the self-check once; (validating, detail)."""
        if self._validation is None:
            return False, "DANE is disabled"
        await self._validation.check()
        return self._validation.validating, self._validation.detail

    async def _refresh(self, domain: str) -> str:
        """A background re-check; returns its outcome for the metrics."""
        resolution = await self.resolve(domain)
        outcome = resolution.outcome
        if outcome.entry is None:
            return "dropped"
        return "kept" if outcome.reason.startswith("cached-kept") else "ok"

    async def resolve(self, domain: str) -> Resolution:
        """Resolve the MTA-STS policy of ``domain`` now (single-flight)."""
        return await self._sts_flight.run(domain, lambda: self._resolve_and_store(domain))

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
