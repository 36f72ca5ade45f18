"""Zone contents for the test DNS: records, zone-file rendering and signing.

A zone has a *kind*:

``signed``
    DNSSEC-signed; its DS goes into unbound's trust anchors, so answers are
    validated and carry the AD flag.
``unsigned``
    plain zone, declared ``domain-insecure`` in unbound (no AD flag).
``bogus``
    signed, but unbound's trust anchor is the DS of a *different* key, so
    validation fails and unbound answers SERVFAIL.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from .procs import find_binary, run

ZoneKind = Literal["signed", "unsigned", "bogus"]
RRKey = tuple[dns.name.Name, dns.rdatatype.RdataType]

#: Address the zones' own NS host names resolve to (informational only:
#: unbound reaches NSD through its stub-zone address, not through NS records).
_NS_ADDRESS = "127.0.0.1"
_ALGORITHM = "ECDSAP256SHA256"


@dataclass(frozen=True)
class ZoneSpec:
    """How to set up one zone. ``negative_ttl`` is the SOA minimum (and SOA
    TTL), i.e. how long resolvers cache NXDOMAIN/NODATA answers."""

    name: str
    kind: ZoneKind = "signed"
    negative_ttl: int = 60


@dataclass(frozen=True)
class RRset:
    ttl: int
    rdatas: tuple[dns.rdata.Rdata, ...]


def parse_rdatas(rtype: dns.rdatatype.RdataType, values: list[str]) -> tuple[dns.rdata.Rdata, ...]:
    """Parse presentation-format values (names must be absolute)."""
    return tuple(
        dns.rdata.from_text(dns.rdataclass.IN, rtype, value, origin=dns.name.root, relativize=False)
        for value in values
    )


class Zone:
    """One authoritative zone: its records and its files on disk."""

    def __init__(self, spec: ZoneSpec, directory: Path) -> None:
        self.spec = spec
        self.origin = dns.name.from_text(spec.name)
        self.kind = spec.kind
        self.directory = directory
        stem = self.origin.to_text(omit_final_dot=True) or "root"
        self.source_file = directory / f"{stem}.zone"
        #: The file NSD serves (the signed copy for signed zones).
        self.served_file = (
            self.source_file if self.kind == "unsigned" else directory / f"{stem}.zone.signed"
        )
        #: Trust anchor for unbound (None for unsigned zones).
        self.anchor_file: Path | None = None
        self.serial = 0
        self.dirty = True
        self._signing_key: str | None = None
        self._mtime_ns = 0
        ns_name = dns.name.from_text("ns", self.origin)
        self.records: dict[RRKey, RRset] = {
            (self.origin, dns.rdatatype.NS): RRset(
                3600, parse_rdatas(dns.rdatatype.NS, [ns_name.to_text()])
            ),
            (ns_name, dns.rdatatype.A): RRset(3600, parse_rdatas(dns.rdatatype.A, [_NS_ADDRESS])),
        }

    @property
    def signed(self) -> bool:
        return self.kind != "unsigned"

    def contains(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.origin)

    def make_keys(self) -> None:
        """Create the signing key and the trust anchor file (signed kinds)."""
        if not self.signed:
            return
        keygen = find_binary("ldns-keygen")
        argv = [keygen, "-a", _ALGORITHM, "-k", self.origin.to_text()]
        # One key with the SEP flag (a "CSK") signs everything.
        self._signing_key = run(argv, cwd=self.directory).strip()
        anchor_key = self._signing_key
        if self.kind == "bogus":
            # Trust a key the zone is not signed with: validation must fail.
            anchor_key = run(argv, cwd=self.directory).strip()
        self.anchor_file = self.directory / f"{anchor_key}.ds"

    def render(self) -> str:
        """The zone file text (unsigned), with the current serial."""
        apex = self.origin.to_text()
        neg = self.spec.negative_ttl
        lines = [
            f"{apex} {neg} IN SOA ns.{apex} hostmaster.{apex} {self.serial} 3600 600 86400 {neg}"
        ]
        for (name, rtype), rrset in sorted(self.records.items()):
            rtype_text = dns.rdatatype.to_text(rtype)
            lines += [
                f"{name.to_text()} {rrset.ttl} IN {rtype_text} {rdata.to_text()}"
                for rdata in rrset.rdatas
            ]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Bump the serial, write the zone file and sign it if needed."""
        self.serial += 1
        self.source_file.write_text(self.render())
        if self.signed:
            self._sign()
        # NSD reloads a zone file only if its mtime changed; file timestamps
        # are coarse, so make sure each version gets a later one.
        self._mtime_ns = max(time.time_ns(), self._mtime_ns + 1_000_000)
        os.utime(self.served_file, ns=(self._mtime_ns, self._mtime_ns))
        self.dirty = False

    def _sign(self) -> None:
        assert self._signing_key is not None, "make_keys() was not called"
        now = datetime.datetime.now(datetime.UTC)
        inception = (now - datetime.timedelta(days=1)).strftime("%Y%m%d%H%M%S")
        expiration = (now + datetime.timedelta(days=30)).strftime("%Y%m%d%H%M%S")
        options = {
            "-i": inception,
            "-e": expiration,
            "-o": self.origin.to_text(),
            "-f": str(self.served_file),
        }
        argv = [find_binary("ldns-signzone")]
        for option, value in options.items():
            argv += [option, value]
        run([*argv, str(self.source_file), self._signing_key], cwd=self.directory)
