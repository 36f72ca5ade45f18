"""The world's DNS: an authoritative NSD serving the test zones and a
validating unbound resolver in front of it (stub zones pointing at NSD).

Clients under test talk to :attr:`DnsWorld.resolver`. The world's own probe
queries are sent from :data:`PROBE_SOURCE`, so :meth:`DnsWorld.query_count`
only counts other clients' queries.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from . import dnsconf
from .procs import Daemon, WorldError, find_binary, free_port, run, tail, wait_for
from .zones import RRKey, RRset, Zone, ZoneSpec, parse_rdatas

DEFAULT_ZONES: tuple[ZoneSpec, ...] = (
    ZoneSpec("test.", kind="signed"),
    ZoneSpec("unsigned.", kind="unsigned"),
    ZoneSpec("bogus.", kind="bogus"),
)
#: Source address of the world's own queries (excluded from query counts).
PROBE_SOURCE = "127.0.0.254"
_STARTUP_TIMEOUT = 15.0
_APPLY_TIMEOUT = 15.0
# "... info: 127.0.0.1 _mta-sts.x.test. TXT IN" (unbound's log-queries line)
_QUERY_LINE = re.compile(r" info: (?P<client>[0-9a-fA-F.:]+) (?P<name>\S+) (?P<type>\S+) IN$")


def query(
    server: tuple[str, int],
    name: str | dns.name.Name,
    rtype: str | dns.rdatatype.RdataType,
    *,
    timeout: float = 2.0,
    source: str | None = None,
    tcp: bool = False,
) -> dns.message.Message:
    """One DNSSEC-aware query (RD, DO and AD set), over UDP with TCP fallback
    on truncation, or over TCP only (fails fast if nothing listens)."""
    request = dns.message.make_query(name, rtype, want_dnssec=True)
    request.flags |= dns.flags.AD
    if tcp:
        return dns.query.tcp(request, server[0], timeout=timeout, port=server[1], source=source)
    response, _ = dns.query.udp_with_fallback(
        request, server[0], timeout=timeout, port=server[1], source=source
    )
    return response


def answer_rdatas(response: dns.message.Message, name: dns.name.Name, rtype: int) -> set[str]:
    """The presentation form of the answer RRset for (name, rtype), if any."""
    for rrset in response.answer:
        if rrset.name == name and rrset.rdtype == rtype:
            return {rdata.to_text() for rdata in rrset}
    return set()


class DnsWorld:
    """NSD + unbound on loopback, with an API to edit zone records."""

    def __init__(
        self,
        directory: Path,
        zones: Sequence[ZoneSpec] = DEFAULT_ZONES,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.zones = [Zone(spec, directory) for spec in zones]
        self.nsd_address = (host, 0)
        self.resolver = (host, 0)
        self._nsd_conf = directory / "nsd.conf"
        self._unbound_conf = directory / "unbound.conf"
        self._unbound_log = directory / "unbound.log"
        self._nsd: Daemon | None = None
        self._unbound: Daemon | None = None
        self._blackhole: list[socket.socket] = []
        self._pending: set[RRKey] = set()
        self._log_offset = 0
        sockets = (dnsconf.nsd_control_socket(directory), dnsconf.unbound_control_socket(directory))
        for path in sockets:
            if len(str(path)) > 100:
                raise WorldError(f"unix socket path too long for the kernel: {path}")

    # ----------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Create keys and zone files, then start NSD and unbound."""
        for zone in self.zones:
            zone.make_keys()
            zone.write()
        self.nsd_address = (self.host, free_port(self.host))
        self.resolver = (self.host, free_port(self.host))
        self._nsd_conf.write_text(
            dnsconf.nsd_conf(self.directory, self.host, self.nsd_address[1], self.zones)
        )
        self._unbound_conf.write_text(
            dnsconf.unbound_conf(self.directory, self.resolver, self.nsd_address, self.zones)
        )
        run([find_binary("unbound-checkconf"), str(self._unbound_conf)])
        self._nsd = Daemon(
            "nsd",
            [find_binary("nsd"), "-d", "-c", str(self._nsd_conf)],
            self.directory / "nsd.out",
            self.directory,
        )
        self._unbound = Daemon(
            "unbound",
            [find_binary("unbound"), "-d", "-c", str(self._unbound_conf)],
            self.directory / "unbound.out",
            self.directory,
        )
        self._nsd.start()
        self._wait_nsd_serving(self.zones)
        self.start_resolver()

    def close(self) -> None:
        """Stop everything; safe to call more than once or after a failed start."""
        self._close_blackhole()
        for daemon in (self._unbound, self._nsd):
            if daemon is not None:
                daemon.stop()

    def stop_resolver(self, *, blackhole: bool = True) -> None:
        """Stop unbound (no-op if stopped). With ``blackhole`` its port stays
        bound by sockets that never answer, so queries time out (and the port
        stays ours); otherwise UDP gets ICMP port-unreachable, TCP is refused."""
        assert self._unbound is not None, "start() first"
        self._unbound.stop()
        self._close_blackhole()
        if blackhole:
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._blackhole = [udp, tcp]
            for sock in self._blackhole:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(self.resolver)
            tcp.listen(64)

    def start_resolver(self) -> None:
        """(Re)start unbound on the same port, with an empty cache; no-op if
        it is running (handy in a fixture's teardown)."""
        assert self._unbound is not None, "start() first"
        if self._unbound.running:
            return
        self._close_blackhole()
        self._unbound.start()
        self._wait_resolver_ready()

    @property
    def resolver_running(self) -> bool:
        return self._unbound is not None and self._unbound.running

    # ------------------------------------------------------------- records

    def set(self, name: str, rtype: str, values: list[str], ttl: int = 60) -> None:
        """Replace the RRset (name, rtype) with ``values`` (presentation
        format, absolute names). Takes effect on :meth:`apply`."""
        if not values:
            raise ValueError("set() needs at least one value; use delete() to remove")
        key, zone = self._locate(name, rtype)
        zone.records[key] = RRset(ttl, parse_rdatas(key[1], values))
        zone.dirty = True
        self._pending.add(key)

    def delete(self, name: str, rtype: str | None = None) -> None:
        """Remove one RRset, or with ``rtype=None`` every RRset at ``name``.
        Takes effect on :meth:`apply`."""
        zone = self._zone_for(name)
        owner = dns.name.from_text(name)
        wanted = None if rtype is None else self._locate(name, rtype)[0][1]
        for key in [k for k in zone.records if k[0] == owner]:
            if wanted is None or key[1] == wanted:
                del zone.records[key]
                zone.dirty = True
                self._pending.add(key)

    def apply(self, timeout: float = _APPLY_TIMEOUT) -> None:
        """Write and sign changed zones, reload NSD, flush unbound's cache,
        and return once every change is visible through unbound."""
        dirty = [zone for zone in self.zones if zone.dirty]
        for zone in dirty:
            zone.write()
        if dirty:
            assert self._nsd is not None, "start() first"
            self._nsd.check_alive()
            run([find_binary("nsd-control"), "-c", str(self._nsd_conf), "reload"])
            self._wait_nsd_serving(dirty, timeout)
        if not self.resolver_running:
            self._pending.clear()  # a restarted resolver starts with an empty cache
            return
        self.flush_cache()
        pending, self._pending = self._pending, set()
        for key in sorted(pending):
            zone = self._zone_for(key[0].to_text())
            if zone.kind != "bogus":  # bogus data cannot be seen through unbound
                self._wait_visible(key, zone, timeout)

    def flush_cache(self) -> None:
        """Empty unbound's caches (rrsets, messages, keys, negative, bogus)."""
        self._unbound_control("flush_zone", ".")
        self._unbound_control("flush_bogus")
        self._unbound_control("flush_negative")

    # --------------------------------------------------------- observation

    def query_count(self, name: str, rtype: str) -> int:
        """How many queries for (name, rtype) clients sent to unbound since
        start (or :meth:`reset_query_counts`); the world's probes excluded.

        Counts what unbound received, cache hits included; a UDP query
        retried over TCP (truncation) counts twice."""
        wanted_name = dns.name.from_text(name)
        wanted_type = rtype.upper()
        count = 0
        for line in self._read_query_log():
            match = _QUERY_LINE.search(line)
            if (
                match
                and match["client"] != PROBE_SOURCE
                and match["type"] == wanted_type
                and dns.name.from_text(match["name"]) == wanted_name
            ):
                count += 1
        return count

    def reset_query_counts(self) -> None:
        self._log_offset = self._unbound_log.stat().st_size if self._unbound_log.exists() else 0

    # ------------------------------------------------------------ internals

    def _read_query_log(self) -> list[str]:
        if not self._unbound_log.exists():
            return []
        with self._unbound_log.open("rb") as log:
            log.seek(self._log_offset)
            return log.read().decode(errors="replace").splitlines()

    def _zone_for(self, name: str) -> Zone:
        owner = dns.name.from_text(name)
        candidates = [zone for zone in self.zones if zone.contains(owner)]
        if not candidates:
            raise ValueError(f"{name!r} is in none of the world's zones")
        return max(candidates, key=lambda zone: len(zone.origin))

    def _locate(self, name: str, rtype: str) -> tuple[RRKey, Zone]:
        rdtype = dns.rdatatype.from_text(rtype)
        if rdtype == dns.rdatatype.SOA:
            raise ValueError("the SOA record is managed by the world")
        return (dns.name.from_text(name), rdtype), self._zone_for(name)

    def _unbound_control(self, *args: str) -> None:
        run([find_binary("unbound-control"), "-c", str(self._unbound_conf), *args])

    def _close_blackhole(self) -> None:
        for sock in self._blackhole:
            sock.close()
        self._blackhole = []

    def _wait_nsd_serving(self, zones: Sequence[Zone], timeout: float = _STARTUP_TIMEOUT) -> None:
        assert self._nsd is not None

        def serving() -> bool | None:
            assert self._nsd is not None
            self._nsd.check_alive()
            for zone in zones:
                response = query(self.nsd_address, zone.origin, "SOA", tcp=True)
                serials = answer_rdatas(response, zone.origin, dns.rdatatype.SOA)
                if not any(soa.split()[2] == str(zone.serial) for soa in serials):
                    return None
            return True

        wait_for(
            serving,
            timeout=timeout,
            what=f"NSD to serve {', '.join(z.origin.to_text() for z in zones)}",
            describe_failure=lambda: tail(self.directory / "nsd.log"),
        )

    def _wait_resolver_ready(self) -> None:
        def ready() -> bool | None:
            assert self._unbound is not None
            self._unbound.check_alive()
            for zone in self.zones:
                if zone.kind == "bogus":
                    continue
                response = self._probe(zone.origin, dns.rdatatype.SOA, tcp=True)
                if not answer_rdatas(response, zone.origin, dns.rdatatype.SOA):
                    return None
                if zone.kind == "signed" and not response.flags & dns.flags.AD:
                    raise WorldError(f"{zone.origin} does not validate (no AD flag)")
            return True

        wait_for(
            ready,
            timeout=_STARTUP_TIMEOUT,
            what="unbound to resolve the test zones",
            describe_failure=lambda: tail(self._unbound_log),
        )

    def _wait_visible(self, key: RRKey, zone: Zone, timeout: float) -> None:
        name, rdtype = key
        rrset = zone.records.get(key)
        expected = {rdata.to_text() for rdata in rrset.rdatas} if rrset else set()

        def visible() -> bool | None:
            response = self._probe(name, rdtype)
            if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                raise WorldError(f"unbound answered {dns.rcode.to_text(response.rcode())}")
            if answer_rdatas(response, name, rdtype) == expected:
                return True
            self.flush_cache()  # a query raced with the reload: drop the stale copy
            return None

        wait_for(
            visible,
            timeout=timeout,
            what=f"{name} {dns.rdatatype.to_text(rdtype)} = {sorted(expected)} through unbound",
            describe_failure=lambda: tail(self._unbound_log),
        )

    def _probe(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, *, tcp: bool = False
    ) -> dns.message.Message:
        return query(self.resolver, name, rdtype, timeout=2.0, source=PROBE_SOURCE, tcp=tcp)
