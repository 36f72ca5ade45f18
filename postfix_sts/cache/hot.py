"""The hot in-memory layer of the policy cache.

Lookups read only this layer: a dictionary access with no disk, network, thread
pool or lock.  Each entry renders its Postfix answer once per profile and keeps
it.  Writes go through to the durable store when a policy changes.
"""

import logging

import cachetools

from postfix_sts.cache.store import PolicyStore
from postfix_sts.core.answer import Answer
from postfix_sts.core.cache_rules import CachedPolicy
from postfix_sts.core.render import Profile, render_policy
from postfix_sts.errors import PolicySyntaxError

log = logging.getLogger(__name__)


class HotEntry:
    """A cached policy with its rendered answers, keyed by profile name."""

    __slots__ = ("_answers", "entry", "expires_at", "next_check_at")

    def __init__(self, entry: CachedPolicy) -> None:
        self.entry = entry
        self.expires_at = entry.expires_at
        self.next_check_at = entry.next_check_at
        self._answers: dict[str, Answer] = {}

    def answer(self, profile: Profile) -> Answer:
        found = self._answers.get(profile.name)
        if found is None:
            found = self._answers[profile.name] = render_policy(self.entry.policy, profile)
        return found


class PolicyCache:
    """Bounded LRU of :class:`HotEntry` in front of a :class:`PolicyStore`."""

    def __init__(self, store: PolicyStore, max_entries: int) -> None:
        self._store = store
        self._entries: cachetools.LRUCache[str, HotEntry] = cachetools.LRUCache(max_entries)

    def load(self, now: float) -> int:
        """Fill the hot layer from the durable store; returns the number of live policies."""
        loaded = 0
        for stored in self._store.load():
            try:
                entry = stored.restore()
            except PolicySyntaxError as exc:
                log.warning(
                    "cache: dropping unreadable stored policy for %s: %s", stored.domain, exc.detail
                )
                self._store.delete(stored.domain)
                continue
            if entry.servable(now):
                self._entries[entry.domain] = HotEntry(entry)
                loaded += 1
        return loaded

    def peek(self, domain: str) -> HotEntry | None:
        """The hot entry for ``domain``, memory only (the lookup hot path)."""
        return self._entries.get(domain)

    def get(self, domain: str) -> CachedPolicy | None:
        """The cached policy, from memory or else the durable store (resolution path)."""
        hot = self._entries.get(domain)
        if hot is not None:
            return hot.entry
        stored = self._store.get(domain)
        if stored is None:
            return None
        try:
            return stored.restore()
        except PolicySyntaxError:
            return None

    def put(self, entry: CachedPolicy, *, persist: bool) -> None:
        """Make ``entry`` current; write it to the durable store when ``persist``."""
        self._entries[entry.domain] = HotEntry(entry)
        if persist:
            self._store.save(entry)

    def remove(self, domain: str, *, persist: bool) -> None:
        self._entries.pop(domain, None)
        if persist:
            self._store.delete(domain)

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._store.close()
