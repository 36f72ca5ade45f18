"""PolicyService.fast_answer: a raw request answered from the cache before is
answered again by its bytes, but never after anything it depended on changed."""

import asyncio

from postfix_sts.app import build_service
from postfix_sts.cache.hot import PolicyCache
from postfix_sts.clock import ManualClock
from postfix_sts.config import Config
from postfix_sts.core.answer import Answer
from postfix_sts.core.cache_rules import CachedPolicy
from postfix_sts.core.dane import no_dane
from postfix_sts.core.render import Profile
from postfix_sts.core.sts_policy import parse_policy
from postfix_sts.metrics import Metrics
from postfix_sts.service import MEMO_KEY_LENGTH, PolicyService

DOMAIN = "fast.example"
RAW = b"postfix fast.example"
POLICY = parse_policy(b"version: STSv1\nmode: enforce\nmx: mx.fast.example\nmax_age: 600\n")
OTHER = parse_policy(b"version: STSv1\nmode: enforce\nmx: mx2.fast.example\nmax_age: 600\n")


def served(clock: ManualClock, *, dane_seconds: float = 300.0) -> tuple[PolicyService, PolicyCache]:
    config = Config(nameservers=(("127.0.0.1", 53),), cache_backend="memory")
    service, cache = build_service(config, clock, Metrics("memory"), durable=False)
    now = clock.now()
    cache.put(CachedPolicy(DOMAIN, "1", POLICY, now, now + 300), persist=False, now=now)
    cache.put_dane(DOMAIN, no_dane("none"), now + dane_seconds, now)
    return service, cache


def test_a_cache_answer_is_remembered_by_its_raw_request() -> None:
    async def run() -> None:
        clock = ManualClock()
        service, _ = served(clock)
        answer = service.lookup(Profile(), DOMAIN, RAW)
        assert isinstance(answer, Answer)
        assert answer.socketmap_frame == service.fast_answer(RAW)

    asyncio.run(run())


def test_any_cache_change_invalidates_remembered_answers() -> None:
    async def run() -> None:
        clock = ManualClock()
        service, cache = served(clock)
        service.lookup(Profile(), DOMAIN, RAW)
        now = clock.now()
        new = CachedPolicy(DOMAIN, "2", OTHER, now, now + 300)
        cache.put(new, persist=False, now=now)
        assert None is service.fast_answer(RAW)

    asyncio.run(run())


def test_remembered_answer_ends_before_the_dane_decision_expires() -> None:
    """DANE decisions are re-resolved in the background before they expire, so the
    fast path stops at the refresh point and lets a lookup start that refresh."""

    async def run() -> None:
        clock = ManualClock()
        service, _ = served(clock, dane_seconds=100.0)
        service.lookup(Profile(), DOMAIN, RAW)
        clock.advance(89.0)
        assert service.fast_answer(RAW) is not None
        clock.advance(1.0)  # 10 s before expiry
        assert None is service.fast_answer(RAW)

    asyncio.run(run())


def test_long_requests_are_not_remembered() -> None:
    """A hostile peer cannot fill memory with long map names."""

    async def run() -> None:
        clock = ManualClock()
        service, _ = served(clock)
        raw = b"m" * MEMO_KEY_LENGTH + b" " + DOMAIN.encode()
        service.lookup(Profile(), DOMAIN, raw)
        assert None is service.fast_answer(raw)

    asyncio.run(run())


def test_a_fast_answer_keeps_its_policy_marked_as_used() -> None:
    """The refresher refreshes only policies in use: fast answers count as use."""

    async def run() -> None:
        clock = ManualClock()
        service, cache = served(clock)
        service.lookup(Profile(), DOMAIN, RAW)
        clock.advance(30.0)
        assert service.fast_answer(RAW) is not None
        hot = cache.peek(DOMAIN)
        assert hot is not None
        assert clock.now() == hot.last_used

    asyncio.run(run())
