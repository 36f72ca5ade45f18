"""The benchmark's loopback world: tests/world (NSD, validating unbound, HTTPS
policy server with a test CA), filled with many domains at once, plus a twin
unbound on port 53 for postfix-mta-sts-resolver, which can only use the system
resolver (``/etc/resolv.conf`` has no port syntax).

Inside the benchmark's private network namespace the policy server listens on
127.0.0.1:443, so both daemons fetch from the same server at the standard port.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.rdatatype

from tests.world import PROBE_SOURCE, World, ZoneSpec, dnsconf
from tests.world.dns import answer_rdatas, query
from tests.world.procs import Daemon, find_binary, run, wait_for

# Same format as the world's own query counter ("... info: 127.0.0.1 name. TXT IN").
_QUERY_LINE = re.compile(r" info: (?P<client>[0-9a-fA-F.:]+) (?P<name>\S+) (?P<type>\S+) IN$")


def enforce_policy(domain: str) -> str:
    return f"version: STSv1\nmode: enforce\nmx: mx1.{domain}\nmx: *.{domain}\nmax_age: 604800\n"


_PROVIDERS = (
    ("mail.protection.outlook.com",),
    ("aspmx.l.google.com", "*.aspmx.l.google.com", "smtp.google.com"),
    ("mx1.mail.example-hoster.net", "mx2.mail.example-hoster.net"),
    ("*.mx.example-cloud.com",),
    ("in1-smtp.example-mail.com", "in2-smtp.example-mail.com"),
)


def shared_policy(domain: str) -> str:
    """An enforce policy of one of a few hosting providers (picked by the domain)."""
    mx = _PROVIDERS[zlib.crc32(domain.encode()) % len(_PROVIDERS)]
    return (
        "version: STSv1\nmode: enforce\n"
        + "".join(f"mx: {m}\n" for m in mx)
        + ("max_age: 1209600\n")
    )


@dataclass(frozen=True)
class DomainSets:
    """The names the scenarios query."""

    enforce: tuple[str, ...]
    no_policy: tuple[str, ...]
    herd: dict[str, str]  # target name -> a domain nobody has queried yet


def make_domain_sets(count: int, herd_targets: Iterable[str]) -> DomainSets:
    return DomainSets(
        enforce=tuple(f"c{i}.test" for i in range(count)),
        # No record at all under these names: _mta-sts.<name> is NXDOMAIN.
        no_policy=tuple(f"n{i}.test" for i in range(count)),
        herd={name: f"herd-{name}.test" for name in herd_targets},
    )


#: Record and negative-answer TTL of the benchmark's zones.  The test world's
#: default (60 s) suits tests; here it would make every cached DNS-derived
#: decision (postfix-sts's negative and DANE entries, SR's c-ares cache) expire
#: in the middle of the measurements.  An hour is a common production value.
ZONE_TTL = 3600
ZONES = (
    ZoneSpec("test.", kind="signed", negative_ttl=ZONE_TTL),
    ZoneSpec("unsigned.", kind="unsigned", negative_ttl=ZONE_TTL),
)


def start_world(directory: Path, https_port: int) -> World:
    """tests.world's World, with its policy server on ``https_port`` (0: any)."""
    return World.start(directory, ZONES, https_port=https_port)


def publish(world: World, domains: Iterable[str]) -> int:
    """Publish an enforce policy for every domain with one zone reload; returns
    the number published. (World.publish_sts reloads once per domain: too slow.)"""
    count = 0
    for domain in domains:
        host = f"mta-sts.{domain}"
        world.dns.set(f"_mta-sts.{domain}", "TXT", ['"v=STSv1; id=20240101T000000;"'], ttl=ZONE_TTL)
        world.dns.set(host, "A", [world.https.host], ttl=ZONE_TTL)
        world.https.serve(host, enforce_policy(domain))
        count += 1
    world.dns.apply(timeout=120)
    return count


def count_queries(log: Path, offset: int, name: str, rtype: str) -> int:
    """Queries for (name, rtype) in an unbound query log after byte ``offset``,
    the world's probes excluded."""
    wanted = dns.name.from_text(name)
    count = 0
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle.read().decode(errors="replace").splitlines():
            match = _QUERY_LINE.search(line)
            if (
                match
                and match["client"] != PROBE_SOURCE
                and match["type"] == rtype.upper()
                and dns.name.from_text(match["name"]) == wanted
            ):
                count += 1
    return count


def count_all_queries(log: Path, offset: int) -> int:
    """Every query in an unbound query log after byte ``offset``, probes excluded."""
    count = 0
    with log.open("rb") as handle:
        handle.seek(offset)
        for line in handle.read().decode(errors="replace").splitlines():
            match = _QUERY_LINE.search(line)
            if match and match["client"] != PROBE_SOURCE:
                count += 1
    return count


def log_size(log: Path) -> int:
    return log.stat().st_size if log.exists() else 0


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class TwinResolver:
    """A second validating unbound with the world's configuration (same zones,
    trust anchors, stub to the same NSD, query logging on), listening on
    ``host:port``; port 53 so that a resolv.conf can point at it."""

    def __init__(self, world: World, directory: Path, host: str = "127.0.0.1", port: int = 53):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.address = (host, port)
        self.conf = directory / "unbound.conf"
        self.log = directory / "unbound.log"
        self.conf.write_text(
            dnsconf.unbound_conf(directory, self.address, world.dns.nsd_address, world.dns.zones)
        )
        run([find_binary("unbound-checkconf"), str(self.conf)])
        self._daemon = Daemon(
            "twin-unbound",
            [find_binary("unbound"), "-d", "-c", str(self.conf)],
            directory / "unbound.out",
            directory,
        )

    def start(self) -> None:
        self._daemon.start()

        def ready() -> bool | None:
            self._daemon.check_alive()
            origin = dns.name.from_text("test.")
            response = query(self.address, origin, "SOA", source=PROBE_SOURCE, tcp=True)
            return True if answer_rdatas(response, origin, dns.rdatatype.SOA) else None

        wait_for(ready, timeout=15, what="the twin unbound to answer")

    def flush(self) -> None:
        for args in (("flush_zone", "."), ("flush_bogus",), ("flush_negative",)):
            run([find_binary("unbound-control"), "-c", str(self.conf), *args])

    @property
    def pid(self) -> int | None:
        return read_pid(self.directory / "unbound.pid")

    def close(self) -> None:
        self._daemon.stop()


def wait_quiet_log(log: Path, settle: float = 0.3, limit: float = 5.0) -> None:
    """Wait until an unbound log stops growing (its lines are written lazily)."""
    deadline = time.monotonic() + limit
    size = log_size(log)
    while time.monotonic() < deadline:
        time.sleep(settle)
        new = log_size(log)
        if new == size:
            return
        size = new
