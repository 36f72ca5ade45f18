"""The durable policy store interface, and the volatile (``memory``) backend.

A store keeps :class:`CachedPolicy` values across restarts.  It is never read on
the hot path: the daemon loads it into :class:`postfix_sts.cache.hot.PolicyCache`
at start-up and writes to it only when a resolution changes a policy.  Timestamps
come from the caller; a store never reads a clock.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from postfix_sts.core.cache_rules import CachedPolicy
from postfix_sts.core.dane import DaneVerdict, Level
from postfix_sts.core.sts_policy import parse_policy


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """The serialised form of a cached policy; the policy is kept as its text."""

    domain: str
    policy_id: str
    policy_text: str
    fetched_at: float
    next_check_at: float

    @classmethod
    def of(cls, entry: CachedPolicy) -> "StoredPolicy":
        return cls(
            entry.domain, entry.policy_id, entry.policy.text, entry.fetched_at, entry.next_check_at
        )

    def restore(self) -> CachedPolicy:
        """Re-parse the stored text; raises PolicySyntaxError if the store was tampered with."""
        return CachedPolicy(
            domain=self.domain,
            policy_id=self.policy_id,
            policy=parse_policy(self.policy_text.encode("utf-8")),
            fetched_at=self.fetched_at,
            next_check_at=self.next_check_at,
        )


@dataclass(frozen=True, slots=True)
class StoredDane:
    """A DANE decision: ``level`` is ``dane-only``, ``dane`` or empty (no DANE).

    TEMP verdicts are never stored.
    """

    domain: str
    level: str
    reason: str
    expires_at: float

    def restore(self) -> DaneVerdict:
        return DaneVerdict(Level(self.level) if self.level else None, None, self.reason)


class PolicyStore(Protocol):
    """Durable storage of cached policies, keyed by domain."""

    def load(self) -> Iterator[StoredPolicy]:
        """Every stored policy, expired or not, one at a time (start-up memory)."""
        ...

    def get(self, domain: str) -> StoredPolicy | None: ...

    def save(self, entry: CachedPolicy) -> None:
        """Insert or replace the policy of ``entry.domain``; durable when this returns."""
        ...

    def delete(self, domain: str) -> None: ...

    def changed_externally(self) -> bool:
        """True if another process changed the store since the last call (cache tools)."""
        ...

    def load_dane(self, now: float) -> list[StoredDane]:
        """Unexpired DANE decisions (expired ones are deleted)."""
        ...

    def save_dane(self, decision: StoredDane) -> None: ...

    def close(self) -> None: ...


class VolatileStore:
    """The ``memory`` backend: nothing survives a restart."""

    def load(self) -> Iterator[StoredPolicy]:
        return iter(())

    def get(self, domain: str) -> StoredPolicy | None:
        return None

    def save(self, entry: CachedPolicy) -> None:
        pass

    def delete(self, domain: str) -> None:
        pass

    def changed_externally(self) -> bool:
        return False

    def load_dane(self, now: float) -> list[StoredDane]:
        return []

    def save_dane(self, decision: StoredDane) -> None:
        pass

    def close(self) -> None:
        pass
