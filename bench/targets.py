"""The servers under test, each a child process with its own directory and log:
postfix-sts, postfix-mta-sts-resolver ("SR", two cache backends) and the bare
constant-reply server.  All listen on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.daemon import render_toml
from tests.world.procs import free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SR_VENV = BENCH_DIR / ".venv-sr"
SR_REQUIREMENT = "postfix-mta-sts-resolver[sqlite,uvloop]==1.5.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def source_fingerprint() -> str:
    """A short hash of postfix_sts/*.py: others edit the code while benchmarks
    run, so each daemon records exactly which code it started with."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "postfix_sts").rglob("*.py")):
        digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads), 0 if gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


class Target:
    """A server process under test."""

    name = "target"
    label = "target"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0
        self.source: str | None = None  # postfix-sts only: fingerprint of its code

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def start(self, timeout: float = 120.0) -> None:
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
                continue
            self.started_in = time.monotonic() - started
            return
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {timeout} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class BareServer(Target):
    name = "bare"
    label = "bare asyncio server (ceiling)"

    def command(self) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "bare_server.py"), "--port", str(self.port)]


@dataclass(frozen=True)
class WorldAccess:
    """What a daemon needs to know about the world."""

    resolver: tuple[str, int]
    ca_file: Path
    https_port: int


class PostfixSts(Target):
    name = "postfix-sts"
    label = "postfix-sts (sqlite cache)"

    def __init__(
        self,
        directory: Path,
        world: WorldAccess,
        *,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(directory)
        self.cache_path = directory / "cache.sqlite3"
        host, port = world.resolver
        config: dict[str, dict[str, Any]] = {
            "server": {"listen": [f"127.0.0.1:{self.port}"]},
            "dns": {"nameservers": [f"{host}:{port}"], "timeout": 2.0},
            "sts": {
                "ca_file": str(world.ca_file),
                "allow_private_addresses": True,
                "https_port": world.https_port,
                "fetch_timeout": 5.0,
            },
            "cache": {"backend": "sqlite", "path": str(self.cache_path)},
            # as tests/integration/conftest.py: DNSSEC probes inside the world's zones
            "dane": {"secure_probe": "test.", "bogus_probe": "bogus."},
        }
        for section, values in (extra or {}).items():
            config.setdefault(section, {}).update(values)
        self.config_path = directory / "postfix-sts.toml"
        self.config_path.write_text(render_toml(config))

    def command(self) -> list[str]:
        return [sys.executable, "-m", "postfix_sts", "serve", "--config", str(self.config_path)]

    def start(self, timeout: float = 120.0) -> None:
        self.source = source_fingerprint()
        super().start(timeout)

    def environment(self) -> dict[str, str]:
        path = os.environ.get("PYTHONPATH", "")
        return {
            **super().environment(),
            "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT),
        }

    def seed_cache(self, domains: Sequence[str], policy_text: Callable[[str], str]) -> None:
        """Write a valid enforce policy for each domain straight into the SQLite
        cache.  The schema is created by postfix-sts's own SqliteStore, so a
        schema migration by the team does not break the seeding as long as the
        ``sts_policy`` columns stay."""
        from postfix_sts.cache.sqlite import SqliteStore  # noqa: PLC0415 (needs the repo)

        SqliteStore(self.cache_path).close()
        now = time.time()
        db = sqlite3.connect(self.cache_path)
        try:
            columns = {row[1] for row in db.execute("PRAGMA table_info(sts_policy)")}
            wanted = {"domain", "policy_id", "policy_text", "fetched_at", "next_check_at"}
            if not wanted <= columns:
                raise RuntimeError(f"sts_policy has columns {sorted(columns)}, need {wanted}")
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO sts_policy "
                    "(domain, policy_id, policy_text, fetched_at, next_check_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        (domain, "20240101T000000", policy_text(domain), now, now + 3600)
                        for domain in domains
                    ),
                )
        finally:
            db.close()


class MtaStsResolver(Target):
    """postfix-mta-sts-resolver's ``mta-sts-daemon`` in its own virtualenv.

    It resolves through the system resolver and verifies certificates against
    the default CA store, so it runs in the benchmark's mount namespace, where
    /etc/resolv.conf points at the twin unbound, with ``SSL_CERT_FILE`` set to
    the world's CA.  ``cache_grace`` (default 60 s: a cached policy older than
    that is re-checked inline, before answering) is set to 3600 s like
    postfix-sts's TXT re-check interval, so SR's cached path is not penalised
    by that default.
    """

    def __init__(self, directory: Path, cache: str, ca_file: Path) -> None:
        super().__init__(directory)
        self.cache = cache
        self.name = f"sr-{cache}"
        self.label = f"postfix-mta-sts-resolver ({cache} cache)"
        self.ca_file = ca_file
        if cache == "internal":
            cache_yaml = "cache:\n  type: internal\n  options:\n    cache_size: 200000\n"
        elif cache == "sqlite":
            cache_yaml = (
                f'cache:\n  type: sqlite\n  options:\n    filename: "{directory / "sr-cache.db"}"\n'
            )
        else:
            raise ValueError(cache)
        self.config_path = directory / "mta-sts-daemon.yml"
        self.config_path.write_text(
            "host: 127.0.0.1\n"
            f"port: {self.port}\n"
            "reuse_port: true\n"
            "shutdown_timeout: 2\n"
            "cache_grace: 3600\n"
            f"{cache_yaml}"
            "default_zone:\n  strict_testing: false\n  timeout: 4\n"
        )

    def command(self) -> list[str]:
        return [
            str(SR_VENV / "bin" / "mta-sts-daemon"),
            "-c",
            str(self.config_path),
            "-v",
            "info",
        ]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "SSL_CERT_FILE": str(self.ca_file)}


def sr_installed() -> bool:
    return (SR_VENV / "bin" / "mta-sts-daemon").exists()


def install_sr() -> None:
    """Create bench/.venv-sr with postfix-mta-sts-resolver (needs PyPI)."""
    if sr_installed():
        return
    subprocess.run([sys.executable, "-m", "venv", str(SR_VENV)], check=True)
    subprocess.run(
        [str(SR_VENV / "bin" / "pip"), "install", "-q", SR_REQUIREMENT],
        check=True,
    )


def sr_versions() -> dict[str, str]:
    if not sr_installed():
        return {}
    code = (
        "import importlib.metadata as m\n"
        "for n in ('postfix-mta-sts-resolver','uvloop','aiodns','pycares','aiohttp','aiosqlite'):\n"
        "    try: print(n, m.version(n))\n"
        "    except m.PackageNotFoundError: print(n, '-')\n"
    )
    out = subprocess.run(
        [str(SR_VENV / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())
