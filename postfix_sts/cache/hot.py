"""The hot in-memory layer of the policy cache.

Lookups read only this layer: a dictionary access with no disk, network, thread
pool or lock.  A policy entry renders its Postfix answer once per profile and
keeps it; a negative entry ("no policy", remembered for a while) answers
NOTFOUND.  Policy writes go through to the durable store when a policy changes;
negative entries live in memory only.
"""

import collections
import itertools
import logging
from collections.abc import Callable
from typing import TypeVar

from postfix_sts.cache.store import PolicyStore, StoredDane
from postfix_sts.core.answer import NOTFOUND, Answer
from postfix_sts.core.cache_rules import CachedPolicy, NegativeEntry
from postfix_sts.core.dane import DaneVerdict
from postfix_sts.core.render import Profile, render_dane, render_policy
from postfix_sts.errors import PolicySyntaxError

log = logging.getLogger(__name__)


class HotPolicy:
    """A cached policy with its rendered answer, kept for the profile last asked.

    Nearly every installation uses one profile, so one rendered answer per entry
    is kept (memory: one reference, not a dictionary per cached domain); another
    profile renders anew, which is still cheap.
    """

    __slots__ = ("_answer", "_profile", "entry", "expires_at", "last_used")

    def __init__(self, entry: CachedPolicy, last_used: float) -> None:
        self.entry = entry
        self.expires_at = entry.expires_at
        self.last_used = last_used
        self._profile: Profile | None = None
        self._answer: Answer | None = None

    def forget_answers(self) -> None:
        self._profile = None

    def answer(self, profile: Profile) -> Answer:
        if profile is self._profile and self._answer is not None:
            return self._answer
        answer = render_policy(self.entry.domain, self.entry.policy, profile)
        self._profile, self._answer = profile, answer
        return answer


class HotNegative:
    """A domain known to have no usable policy until ``expires_at``."""

    __slots__ = ("expires_at", "last_used", "negative")

    def __init__(self, negative: NegativeEntry, last_used: float) -> None:
        self.negative = negative
        self.expires_at = negative.until
        self.last_used = last_used

    def answer(self, profile: Profile) -> Answer:
        return NOTFOUND


#: A DANE decision in use is re-resolved in the background this long before it
#: expires, or after 80% of its lifetime if that is shorter; never served after.
DANE_REFRESH_AHEAD = 10.0


class HotDane:
    """A DANE decision until ``expires_at``; ``answer`` is None when DANE does not apply.

    ``refresh_at``: when a lookup should start re-resolving it in the background.
    """

    __slots__ = ("answer", "expires_at", "refresh_at", "verdict")

    def __init__(self, verdict: DaneVerdict, expires_at: float, decided_at: float) -> None:
        self.verdict = verdict
        self.answer = render_dane(verdict)
        self.expires_at = expires_at
        lifetime = max(expires_at - decided_at, 0.0)
        self.refresh_at = expires_at - min(DANE_REFRESH_AHEAD, 0.2 * lifetime)


HotEntry = HotPolicy | HotNegative


def entry_kind(entry: "HotEntry | HotDane") -> str:
    """The metrics kind: ``sts-<mode>``, ``negative``, ``dane-only``, ``dane``,
    ``dane-temp`` or ``dane-none``."""
    if isinstance(entry, HotPolicy):
        return f"sts-{entry.entry.policy.mode.value}"
    if isinstance(entry, HotDane):
        verdict = entry.verdict
        return "dane-" + (
            verdict.level.value if verdict.level else "temp" if verdict.temp else "none"
        )
    return "negative"


_V = TypeVar("_V", bound=HotPolicy | HotNegative | HotDane)
T = TypeVar("T")

#: How many of the oldest-written entries an eviction looks at.
EVICTION_SAMPLE = 8


class _BoundedMap(dict[str, _V]):
    """Entries by domain, at most ``maxsize``, counted by kind.

    Reads are plain ``dict`` reads, at C speed: nothing on the lookup path
    reorders anything (cachetools' LRUCache does Python work on every read).
    When full, a write evicts the least recently used of the
    :data:`EVICTION_SAMPLE` oldest-written entries (approximated LRU by
    sampling, as Redis does); entries without ``last_used`` go first.
    """

    def __init__(
        self, maxsize: int, on_evict: Callable[[], None], on_change: Callable[[], None]
    ) -> None:
        super().__init__()
        self.maxsize = maxsize
        self.counts: collections.Counter[str] = collections.Counter()
        self._on_evict = on_evict
        self._on_change = on_change

    def __setitem__(self, key: str, value: _V) -> None:
        self._on_change()
        old = dict.pop(self, key, None)
        if old is not None:
            self.counts[entry_kind(old)] -= 1
        elif len(self) >= self.maxsize:
            self._evict_one()
        dict.__setitem__(self, key, value)  # (re)written entries go to the end
        self.counts[entry_kind(value)] += 1

    def discard(self, key: str) -> None:
        old = dict.pop(self, key, None)
        if old is not None:
            self._on_change()
            self.counts[entry_kind(old)] -= 1

    def _evict_one(self) -> None:
        sample = list(itertools.islice(iter(self), EVICTION_SAMPLE))
        victim = min(sample, key=lambda k: getattr(self[k], "last_used", 0.0))
        self.discard(victim)
        self._on_evict()


class PolicyCache:
    """Bounded map of hot entries in front of a :class:`PolicyStore`."""

    def __init__(
        self,
        store: PolicyStore,
        max_entries: int,
        on_evict: Callable[[], None] = lambda: None,
        on_backend_error: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._on_backend_error = on_backend_error
        #: Moves on every change to the hot layer; answers derived from it are
        #: valid only while it stays the same (PolicyService's fast path).
        self.generation = 0
        self._entries: _BoundedMap[HotEntry] = _BoundedMap(max_entries, on_evict, self._changed)
        self._dane: _BoundedMap[HotDane] = _BoundedMap(max_entries, on_evict, self._changed)
        # Reads are the maps' own dict.get: a C call, no Python frame (the hot path).
        self.peek: Callable[[str], HotEntry | None] = self._entries.get
        self.peek_dane: Callable[[str], HotDane | None] = self._dane.get

    def _changed(self) -> None:
        self.generation += 1

    def put_dane(self, domain: str, verdict: DaneVerdict, expires_at: float, now: float) -> None:
        """Remember a DANE decision made at ``now``; durable unless it is TEMP."""
        self._dane[domain] = HotDane(verdict, expires_at, now)
        if verdict.temp is None:
            level = verdict.level.value if verdict.level else ""
            stored = StoredDane(domain, level, verdict.reason, expires_at)
            self._durable(f"saving the DANE decision of {domain}", self._store.save_dane, stored)

    def load_dane(self, now: float) -> int:
        """Load unexpired DANE decisions from the durable store."""
        stored = self._store.load_dane(now)
        for row in stored:
            self._dane[row.domain] = HotDane(row.restore(), row.expires_at, now)
        return len(stored)

    def forget_rendered_answers(self) -> None:
        """Drop every rendered answer (profiles changed on reload); re-rendered on use."""
        self._changed()
        for hot in self._entries.values():
            if isinstance(hot, HotPolicy):
                hot.forget_answers()

    def counts(self) -> dict[str, int]:
        """Entries by kind (see :func:`entry_kind`)."""
        return dict(self._entries.counts + self._dane.counts)

    def load(self, now: float) -> list[CachedPolicy]:
        """Fill the hot layer from the durable store; returns the live policies loaded."""
        loaded: list[CachedPolicy] = []
        unreadable: list[str] = []
        for stored in self._store.load():
            try:
                entry = stored.restore()
            except PolicySyntaxError as exc:
                log.warning(
                    "cache: dropping unreadable stored policy for %s: %s",
                    stored.domain,
                    exc.detail,
                )
                unreadable.append(stored.domain)
                continue
            if entry.servable(now):
                self._entries[entry.domain] = HotPolicy(entry, last_used=now)
                loaded.append(entry)
        for domain in unreadable:
            self._durable(f"deleting the unreadable policy of {domain}", self._store.delete, domain)
        return loaded

    def pick_up_external_changes(self, now: float) -> list[CachedPolicy]:
        """Follow changes other processes made to the durable store (``cache purge``).

        Policies and DANE decisions deleted there are dropped from memory; policies
        added or replaced there are loaded.  Returns the policies loaded, for
        scheduling.
        """
        if not self._store.changed_externally():
            return []
        kept_dane = {row.domain for row in self._store.load_dane(now)}
        for domain, dane in list(self._dane.items()):
            if dane.verdict.temp is None and domain not in kept_dane:
                self._dane.discard(domain)
        stored = {s.domain: s for s in self._store.load()}
        for domain, hot in list(self._entries.items()):
            if isinstance(hot, HotPolicy) and domain not in stored:
                self._entries.discard(domain)
                log.info("cache: %s was purged from the durable store; dropped", domain)
        loaded: list[CachedPolicy] = []
        for domain, row in stored.items():
            current = self._entries.get(domain)
            if isinstance(current, HotPolicy) and (
                current.entry.policy_id,
                current.entry.fetched_at,
            ) == (row.policy_id, row.fetched_at):
                continue
            try:
                entry = row.restore()
            except PolicySyntaxError:
                continue
            if entry.servable(now):
                self._entries[domain] = HotPolicy(entry, last_used=now)
                loaded.append(entry)
        return loaded

    def get(self, domain: str) -> CachedPolicy | None:
        """The cached policy, from memory or else the durable store (resolution path)."""
        hot = self._entries.get(domain)
        if isinstance(hot, HotPolicy):
            return hot.entry
        stored = self._store.get(domain)
        if stored is None:
            return None
        try:
            return stored.restore()
        except PolicySyntaxError:
            return None

    def negative(self, domain: str) -> NegativeEntry | None:
        hot = self._entries.get(domain)
        return hot.negative if isinstance(hot, HotNegative) else None

    def put(self, entry: CachedPolicy, *, persist: bool, now: float) -> None:
        """Make ``entry`` current; write it to the durable store when ``persist``."""
        current = self._entries.get(entry.domain)
        last_used = current.last_used if current is not None else now
        if isinstance(current, HotPolicy) and current.entry.policy is entry.policy:
            self._changed()
            current.entry = entry  # same policy, new schedule: keep the rendered answers
            current.expires_at = entry.expires_at
        else:
            self._entries[entry.domain] = HotPolicy(entry, last_used)
        if persist:
            self._durable(f"saving the policy of {entry.domain}", self._store.save, entry)

    def put_negative(self, negative: NegativeEntry, *, now: float) -> None:
        current = self._entries.get(negative.domain)
        last_used = current.last_used if current is not None else now
        self._entries[negative.domain] = HotNegative(negative, last_used)

    def remove(self, domain: str, *, persist: bool) -> None:
        self._entries.discard(domain)
        if persist:
            self._durable(f"deleting the policy of {domain}", self._store.delete, domain)

    def _durable(self, what: str, write: Callable[[T], None], value: T) -> None:
        """Write to the durable store; a failure is logged and counted, never raised:
        the answer is still right, only its persistence is lost."""
        try:
            write(value)
        except Exception as exc:
            self._on_backend_error()
            log.error("cache: %s failed in the durable store: %s", what, exc)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._store.close()
