"""A validating resolver on port 53 for the sending Postfix.

Postfix resolves MX, A and TLSA records through the C library, which reads
``/etc/resolv.conf`` and can only talk to port 53. The world's own unbound
listens on a random port, so the harness runs a second unbound, configured
exactly like the world's (same stub zones pointing at the world's NSD, same
trust anchors: ``test.`` validates, answers carry the AD bit), on
``RESOLVER_ADDRESS:53``. The sending Postfix sees it through a private
``resolv.conf`` (see :mod:`tests.e2e.postfix`).
"""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.rdatatype

from tests.world import DnsWorld, WorldError, dnsconf
from tests.world.dns import PROBE_SOURCE, answer_rdatas, query
from tests.world.procs import Daemon, find_binary, run, tail, wait_for

#: Loopback address of the port-53 resolver (any 127/8 address works on Linux).
RESOLVER_ADDRESS = "127.0.53.1"
_STARTUP_TIMEOUT = 15.0


class Port53Resolver:
    """A second validating unbound, on ``address:53``, in front of the world's NSD."""

    def __init__(self, directory: Path, dns_world: DnsWorld, address: str = RESOLVER_ADDRESS):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.address = address
        self._dns = dns_world
        self._conf = directory / "unbound.conf"
        self._daemon: Daemon | None = None

    @property
    def server(self) -> tuple[str, int]:
        return self.address, 53

    def resolv_conf(self) -> str:
        """resolv.conf text pointing the C library at this resolver.

        ``trust-ad`` makes glibc (2.31+) set the AD bit in queries and keep it
        in answers; without it Postfix never sees DNSSEC-validated data and
        DANE is impossible."""
        return f"nameserver {self.address}\noptions trust-ad timeout:2 attempts:2\n"

    def start(self) -> None:
        self._conf.write_text(
            dnsconf.unbound_conf(
                self.directory, self.server, self._dns.nsd_address, self._dns.zones
            )
        )
        run([find_binary("unbound-checkconf"), str(self._conf)])
        self._daemon = Daemon(
            "unbound (port 53)",
            [find_binary("unbound"), "-d", "-c", str(self._conf)],
            self.directory / "unbound.out",
            self.directory,
        )
        self._daemon.start()
        wait_for(
            self._ready,
            timeout=_STARTUP_TIMEOUT,
            what=f"unbound on {self.address}:53 to resolve the test zones",
            describe_failure=lambda: (
                tail(self.directory / "unbound.log") + "\n" + tail(self.directory / "unbound.out")
            ),
        )

    def flush(self) -> None:
        """Forget cached answers (call after changing the world's zones)."""
        control = [find_binary("unbound-control"), "-c", str(self._conf)]
        run([*control, "flush_zone", "."])
        run([*control, "flush_bogus"])
        run([*control, "flush_negative"])

    def close(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()

    def _ready(self) -> bool | None:
        assert self._daemon is not None
        self._daemon.check_alive()
        for zone in self._dns.zones:
            if zone.kind == "bogus":
                continue
            response = query(self.server, zone.origin, "SOA", source=PROBE_SOURCE, tcp=True)
            if not answer_rdatas(response, zone.origin, dns.rdatatype.SOA):
                return None
            if zone.kind == "signed" and not response.flags & dns.flags.AD:
                raise WorldError(f"{zone.origin} does not validate on {self.address}:53")
        return True
