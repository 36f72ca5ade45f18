"""``postfix-sts cache``: inspect, purge and export the durable policy cache.

Operator tools over the ``sqlite`` backend's file (docs/cache-tools.md):

* ``cache list [--json]``: one line per cached policy;
* ``cache show DOMAIN [--json]``: one policy in full, with the answer Postfix gets;
* ``cache purge DOMAIN`` / ``cache purge --all``: delete policies, e.g. after a bad
  policy was cached.  A running daemon notices the change to its file within
  about a second and stops serving the purged policies from memory;
* ``cache export [--output FILE]``: a static Postfix ``texthash:``/``hash:`` table
  of the enforced, unexpired policies, as a fallback when the daemon is down.

They are safe while the daemon runs: list, show and export open the database
read-only (``mode=ro``), purge writes in one short transaction with a short busy
timeout, and no command keeps the database open longer than it runs.  The
``memory`` backend keeps policies inside the daemon's process, out of reach.

Exit status: 0 done; 1 no such cached policy, the database stayed busy, or the
reader of the output went away;
2 usage error, memory backend, or no usable cache database.
"""

import argparse
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postfix_sts.cache.sqlite import SCHEMA_VERSION
from postfix_sts.cache.store import StoredPolicy
from postfix_sts.config import Config
from postfix_sts.core.answer import Answer, Status
from postfix_sts.core.query import NotADomain, normalize_key
from postfix_sts.core.render import Profile, render_policy
from postfix_sts.core.sts_policy import StsPolicy
from postfix_sts.errors import PolicySyntaxError

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_UNUSABLE = 2

#: How long purge waits for the daemon's own write to finish, in milliseconds.
BUSY_TIMEOUT_MS = 2000

#: The profile whose answers ``show`` displays and ``export`` writes.
PROFILE = "default"

# The ``sts_policy`` table of postfix_sts.cache.sqlite, schema version SCHEMA_VERSION.
_TABLE = "sts_policy"
_COLUMNS = "domain, policy_id, policy_text, fetched_at, next_check_at"


class CacheToolError(Exception):
    """A command cannot be carried out: ``message`` is one line, ``status`` the exit code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ------------------------------------------------------------------ arguments


def add_arguments(cache: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The ``list``/``show``/``purge``/``export`` subcommands of the ``cache`` parser.

    ``common`` carries ``--config`` and ``--log-level``; each subcommand takes it so
    that ``postfix-sts cache list --config FILE`` works.
    """
    commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", parents=[common], help="one line per cached policy")
    listing.add_argument("--json", action="store_true", help="a JSON list of objects")
    show = commands.add_parser(
        "show", parents=[common], help="one cached policy in full, with its Postfix answer"
    )
    show.add_argument("domain")
    show.add_argument("--json", action="store_true", help="a JSON object")
    purge = commands.add_parser(
        "purge", parents=[common], help="delete one cached policy, or all with --all"
    )
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("domain", nargs="?", help="the domain whose policy to delete")
    which.add_argument("--all", action="store_true", help="delete every cached policy")
    export = commands.add_parser(
        "export",
        parents=[common],
        help="a static Postfix table of the enforced, unexpired policies",
    )
    export.add_argument(
        "--output", type=Path, help="write the table to FILE (atomically) instead of stdout"
    )


def run(config: Config, args: argparse.Namespace) -> int:
    """Carry out ``postfix-sts cache ...``; returns the exit status."""
    try:
        path = _database_path(config)
        now = time.time()
        profile = config.profile(PROFILE)
        command = args.cache_command
        if command == "list":
            return _list(path, now, as_json=args.json)
        if command == "show":
            return _show(path, _domain(args.domain), profile, now, as_json=args.json)
        if command == "purge":
            return _purge(path, None if args.all else _domain(args.domain))
        if command == "export":
            return _export(path, profile, now, args.output)
        raise CacheToolError(f"unknown cache command {command!r}", EXIT_UNUSABLE)
    except CacheToolError as exc:
        print(f"postfix-sts: cache: {exc.message}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        # The reader went away (``cache list | head``): no traceback, and none at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_NOT_FOUND


def _database_path(config: Config) -> Path:
    if config.cache_backend != "sqlite":
        raise CacheToolError(
            f'backend is "{config.cache_backend}": its policies live only inside the '
            'daemon process and cannot be reached; set [cache] backend = "sqlite"',
            EXIT_UNUSABLE,
        )
    return config.cache_path


def _domain(key: str) -> str:
    """``key`` as the daemon keys it: lower case, no trailing dot, A-label."""
    domain = normalize_key(key)
    if isinstance(domain, NotADomain):
        raise CacheToolError(f"{key!r} is not a policy domain: {domain.reason}", EXIT_UNUSABLE)
    return domain


# ------------------------------------------------------------------ entries


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored policy with its parsed form; ``error`` says why it does not parse."""

    stored: StoredPolicy
    policy: StsPolicy | None
    error: str | None

    @classmethod
    def of(cls, stored: StoredPolicy) -> "Entry":
        try:
            return cls(stored, stored.restore().policy, None)
        except PolicySyntaxError as exc:
            return cls(stored, None, exc.detail)

    @property
    def domain(self) -> str:
        return self.stored.domain

    @property
    def expires_at(self) -> float | None:
        return None if self.policy is None else self.stored.fetched_at + self.policy.max_age

    def expired(self, now: float) -> bool:
        """Past ``fetched_at + max_age`` (or unreadable): the daemon does not serve it."""
        expires = self.expires_at
        return expires is None or now >= expires

    def answer(self, profile: Profile) -> Answer | None:
        """What the daemon answers for this policy, while it is unexpired."""
        return None if self.policy is None else render_policy(self.domain, self.policy, profile)

    def summary(self, now: float) -> dict[str, Any]:
        expires = self.expires_at
        return {
            "domain": self.domain,
            "mode": self.policy.mode.value if self.policy else None,
            "id": self.stored.policy_id,
            "max_age": self.policy.max_age if self.policy else None,
            "mx": list(self.policy.mx) if self.policy else [],
            "fetched": iso(self.stored.fetched_at),
            "expires": iso(expires) if expires is not None else None,
            "next_check": iso(self.stored.next_check_at),
            "expired": self.expired(now),
            "error": self.error,
        }


def iso(timestamp: float) -> str:
    """UTC ISO 8601 to the second, e.g. ``2026-01-01T12:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# ------------------------------------------------------------------ database


@contextlib.contextmanager
def _open(path: Path, *, write: bool) -> Iterator[sqlite3.Connection]:
    """The cache database, never created here: read-only unless ``write``; closed after."""
    if not path.exists():
        raise CacheToolError(
            f"no cache database at {path} (has the daemon run with this config?)", EXIT_UNUSABLE
        )
    uri = f"{path.resolve().as_uri()}?mode={'rw' if write else 'ro'}"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise CacheToolError(f"cannot open {path}: {exc}", EXIT_UNUSABLE) from None
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        yield db
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise CacheToolError(
                f"{path} stayed busy for {BUSY_TIMEOUT_MS} ms; try again", EXIT_NOT_FOUND
            ) from None
        raise CacheToolError(f"cannot use {path}: {exc}", EXIT_UNUSABLE) from None
    except sqlite3.Error as exc:
        raise CacheToolError(f"cannot use {path}: {exc}", EXIT_UNUSABLE) from None
    finally:
        db.close()


def _has_table(db: sqlite3.Connection, path: Path) -> bool:
    """Whether the policy table exists; a schema this version does not know is an error."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, SCHEMA_VERSION):
        raise CacheToolError(
            f"{path} has schema version {version}, this postfix-sts knows {SCHEMA_VERSION}",
            EXIT_UNUSABLE,
        )
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)
    ).fetchone()
    return found is not None


def read_all(path: Path) -> list[StoredPolicy]:
    """Every stored policy, sorted by domain (read-only)."""
    with _open(path, write=False) as db:
        if not _has_table(db, path):
            return []
        rows = db.execute(f"SELECT {_COLUMNS} FROM {_TABLE} ORDER BY domain").fetchall()
    return [StoredPolicy(*row) for row in rows]


def read_one(path: Path, domain: str) -> StoredPolicy | None:
    """The stored policy of ``domain`` (read-only)."""
    with _open(path, write=False) as db:
        if not _has_table(db, path):
            return None
        row = db.execute(f"SELECT {_COLUMNS} FROM {_TABLE} WHERE domain = ?", (domain,)).fetchone()
    return StoredPolicy(*row) if row is not None else None


def delete(path: Path, domain: str | None) -> list[StoredPolicy]:
    """Delete the policy of ``domain``, or every policy when None; returns what went.

    The domain's cached DANE decision is deleted too, so the daemon decides again.
    """
    where, params = ("WHERE domain = ?", (domain,)) if domain is not None else ("", ())
    with _open(path, write=True) as db:
        if not _has_table(db, path):
            return []
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM {_TABLE} {where} ORDER BY domain", params
            ).fetchall()
            db.execute(f"DELETE FROM {_TABLE} {where}", params)
            if _has_dane_table(db):
                db.execute(f"DELETE FROM dane_decision {where}", params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return [StoredPolicy(*row) for row in rows]


# ------------------------------------------------------------------ commands


def _list(path: Path, now: float, *, as_json: bool) -> int:
    entries = [Entry.of(stored) for stored in read_all(path)]
    if as_json:
        print(json.dumps([entry.summary(now) for entry in entries], indent=2))
        return EXIT_OK
    if not entries:
        print(f"postfix-sts: cache: no cached policies in {path}", file=sys.stderr)
    width = max((len(entry.domain) for entry in entries), default=0)
    id_width = max((len(entry.stored.policy_id) for entry in entries), default=0)
    for entry in entries:
        print(list_line(entry, now, width, id_width))
    return EXIT_OK


def list_line(entry: Entry, now: float, width: int = 0, id_width: int = 0) -> str:
    """``domain  mode  id=..  fetched=..  expires=..  next-check=..[  expired]``."""
    info = entry.summary(now)
    line = (
        f"{entry.domain:<{width}}  {info['mode'] or 'unreadable':<7}  id={info['id']:<{id_width}}"
        f"  fetched={info['fetched']}  expires={info['expires'] or '-'}"
        f"  next-check={info['next_check']}"
    )
    return line + "  expired" if info["expired"] else line


def _show(path: Path, domain: str, profile: Profile, now: float, *, as_json: bool) -> int:
    stored = read_one(path, domain)
    if stored is None:
        raise CacheToolError(f"no cached policy for {domain} in {path}", EXIT_NOT_FOUND)
    entry = Entry.of(stored)
    answer = entry.answer(profile)
    report = {
        **entry.summary(now),
        "profile": profile.name,
        "answer": answer.socketmap_payload().decode() if answer is not None else None,
        "policy": stored.policy_text,
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_show(report, now, entry)
    return EXIT_OK


def _print_show(report: dict[str, Any], now: float, entry: Entry) -> None:
    print(f"domain:     {report['domain']}")
    print(f"mode:       {report['mode'] or 'unreadable: ' + str(report['error'])}")
    print(f"id:         {report['id']}")
    if report["max_age"] is not None:
        print(f"max_age:    {report['max_age']} s")
    print(f"mx:         {', '.join(report['mx']) or '-'}")
    print(f"fetched:    {report['fetched']}")
    expires = entry.expires_at
    if expires is not None:
        state = "expired" if report["expired"] else "in force"
        print(f"expires:    {report['expires']} ({state}, {_relative(expires - now)})")
    print(f"next check: {report['next_check']} (as last written by the daemon)")
    if report["answer"] is not None:
        note = "" if not report["expired"] else " (expired: not served; looked up afresh)"
        print(f"answer:     {report['answer']} [profile {report['profile']}]{note}")
    print("policy:")
    for line in report["policy"].splitlines():
        print(f"  | {line}")


def _relative(seconds: float) -> str:
    amount = abs(int(seconds))
    days, rest = divmod(amount, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = f"{days}d{hours}h" if days else f"{hours}h{minutes}m" if hours else f"{minutes}m"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _has_dane_table(db: sqlite3.Connection) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dane_decision'"
    ).fetchone()
    return found is not None


def _purge(path: Path, domain: str | None) -> int:
    deleted = delete(path, domain)
    if domain is not None and not deleted:
        raise CacheToolError(
            f"no cached policy for {domain} in {path}; nothing purged", EXIT_NOT_FOUND
        )
    for stored in deleted:
        print(f"purged {stored.domain} (policy id {stored.policy_id})")
    if domain is None:
        print(f"purged {len(deleted)} {'policy' if len(deleted) == 1 else 'policies'}")
    return EXIT_OK


def export_table(
    entries: list[Entry], profile: Profile, now: float, source: Path, output: Path | None = None
) -> str:
    """A Postfix table source of the enforced, unexpired policies, sorted by domain.

    Each line is ``<domain> <value>`` with the exact value the daemon answers
    for ``profile``; ``testing`` policies are included only if the profile
    enforces them.  The header says when and from where it was exported, and
    how to use it (with ``output`` as the table's path, if known).
    """
    where = str(output.resolve()) if output is not None else "/path/to/this/file"
    lines: list[str] = []
    expiries: list[float] = []
    for entry in sorted(entries, key=lambda e: e.domain):
        answer = entry.answer(profile)
        expires = entry.expires_at
        if answer is None or expires is None or entry.expired(now) or answer.status != Status.OK:
            continue
        lines.append(f"{entry.domain} {answer.text}")
        expiries.append(expires)
    header = [
        "# postfix-sts static MTA-STS policy table: a fallback for when the daemon is down.",
        f"# Exported {iso(now)} from {source} (profile {profile.name}):",
        f"# {len(lines)} enforced, unexpired {'policy' if len(lines) == 1 else 'policies'}.",
        "# A snapshot: nothing here is refreshed; re-export it regularly.",
    ]
    if expiries:
        header.append(f"# The first of these policies expires {iso(min(expiries))}.")
    header += [
        f"# Use it as smtp_tls_policy_maps = texthash:{where}",
        f"# or run 'postmap hash:{where}' and use hash:{where}",
    ]
    return "\n".join([*header, *lines]) + "\n"


def _export(path: Path, profile: Profile, now: float, output: Path | None) -> int:
    entries = [Entry.of(stored) for stored in read_all(path)]
    table = export_table(entries, profile, now, path, output)
    if output is None:
        sys.stdout.write(table)
        return EXIT_OK
    try:
        write_atomically(output, table)
    except OSError as exc:
        raise CacheToolError(f"cannot write {output}: {exc.strerror}", EXIT_UNUSABLE) from None
    count = sum(1 for line in table.splitlines() if line and not line.startswith("#"))
    print(f"exported {count} {'policy' if count == 1 else 'policies'} to {output}")
    return EXIT_OK


def write_atomically(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` via a temp file in the same directory and a rename,
    so Postfix never reads a half-written table.  The file is mode 0644."""
    directory = output.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
