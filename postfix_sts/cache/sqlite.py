"""The ``sqlite`` backend: the durable copy of the policy cache in one SQLite file.

WAL journal with ``synchronous=NORMAL``: a committed write survives a crash or
``kill -9`` of the daemon (not necessarily a power loss of the host, which costs
at most the last policies fetched).  Writes happen only when a policy changes,
never per query.
"""

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from postfix_sts.cache.store import StoredDane, StoredPolicy
from postfix_sts.core.cache_rules import CachedPolicy
from postfix_sts.errors import ConfigError

#: 1: sts_policy; 2: adds dane_decision (created on open, so 1 upgrades in place).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sts_policy (
    domain        TEXT PRIMARY KEY,
    policy_id     TEXT NOT NULL,
    policy_text   TEXT NOT NULL,
    fetched_at    REAL NOT NULL,
    next_check_at REAL NOT NULL
) WITHOUT ROWID
"""
_DANE_SCHEMA = """
CREATE TABLE IF NOT EXISTS dane_decision (
    domain     TEXT PRIMARY KEY,
    level      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
_COLUMNS = "domain, policy_id, policy_text, fetched_at, next_check_at"


class SqliteStore:
    """A :class:`postfix_sts.cache.store.PolicyStore` in a SQLite database file."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise ConfigError(
                    f"[cache] path: {path} has schema version {version}, "
                    f"this postfix-sts knows {SCHEMA_VERSION}"
                )
            self._db.execute(_SCHEMA)
            self._db.execute(_DANE_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._data_version = self._read_data_version()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"[cache] path: cannot open {path}: {exc}") from None

    def load(self) -> Iterator[StoredPolicy]:
        for row in self._db.execute(f"SELECT {_COLUMNS} FROM sts_policy"):
            yield StoredPolicy(*row)

    def get(self, domain: str) -> StoredPolicy | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM sts_policy WHERE domain = ?", (domain,)
        ).fetchone()
        return StoredPolicy(*row) if row is not None else None

    def save(self, entry: CachedPolicy) -> None:
        stored = StoredPolicy.of(entry)
        self._db.execute(
            f"INSERT OR REPLACE INTO sts_policy ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
            (
                stored.domain,
                stored.policy_id,
                stored.policy_text,
                stored.fetched_at,
                stored.next_check_at,
            ),
        )

    def delete(self, domain: str) -> None:
        self._db.execute("DELETE FROM sts_policy WHERE domain = ?", (domain,))

    def load_dane(self, now: float) -> list[StoredDane]:
        self._db.execute("DELETE FROM dane_decision WHERE expires_at <= ?", (now,))
        rows = self._db.execute(
            "SELECT domain, level, reason, expires_at FROM dane_decision"
        ).fetchall()
        return [StoredDane(*row) for row in rows]

    def save_dane(self, decision: StoredDane) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO dane_decision (domain, level, reason, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (decision.domain, decision.level, decision.reason, decision.expires_at),
        )

    def changed_externally(self) -> bool:
        """SQLite's ``data_version`` moves only when another connection commits."""
        version = self._read_data_version()
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _read_data_version(self) -> int:
        version: int = self._db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def close(self) -> None:
        self._db.close()
