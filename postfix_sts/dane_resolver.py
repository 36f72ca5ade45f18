"""DANE at the edge: collects the DNS facts for :mod:`postfix_sts.core.dane`.

:class:`DaneResolver` looks up the MX RRset, then each MX host's addresses and
TLSA records, all with the DO bit, and hands the facts to
:func:`postfix_sts.core.dane.decide`.  Every DNS failure on this path becomes a
TEMP verdict naming the name and the failure; nothing here falls back silently.

:class:`ResolverValidation` is the self-check: the configured resolver must set
the AD bit on a signed answer and refuse a bogus one (SERVFAIL).  Until it has
passed, AD bits are not trusted and no ``dane``/``dane-only`` is answered from
them (RFC 7672 section 2.1.1).
"""

import asyncio
import logging
from dataclasses import dataclass, field

import dns.rdatatype

from postfix_sts.core.dane import (
    MX_NOT_AUTHENTICATED,
    MX_NOT_TRUSTED,
    NULL_MX,
    NXDOMAIN,
    DaneVerdict,
    HostFacts,
    HostState,
    Tlsa,
    dane_temp,
    decide,
    host_state,
    no_dane,
)
from postfix_sts.dns_client import DnsClient, SecureAnswer
from postfix_sts.errors import DnsLookupError
from postfix_sts.metrics import Metrics

log = logging.getLogger(__name__)

#: MX hosts examined per domain, best preference first (hostile zones).
MAX_MX_HOSTS = 10
#: A TEMP verdict is remembered this long, so a broken domain costs one lookup
#: per interval rather than one per delivery; Postfix retries deferred mail later.
TEMP_HOLD_SECONDS = 30
#: Longest time a DANE decision is cached, whatever the TTLs say.
MAX_HOLD_SECONDS = 86_400


class _Temp(Exception):
    """A DNS failure that makes the decision TEMP."""


@dataclass
class DaneReport:
    """Everything the DANE resolution saw and decided (log, metrics, ``query``)."""

    domain: str
    verdict: DaneVerdict
    ttl: float
    mx_status: str = ""
    mx_secure: bool = False
    mx_records: tuple[str, ...] = ()
    hosts: list[HostFacts] = field(default_factory=list)


class DaneResolver:
    """Resolves the DANE verdict of a domain for SMTP on ``port``."""

    def __init__(self, dns_client: DnsClient, port: int = 25) -> None:
        self._dns = dns_client
        self._port = port

    async def resolve(self, domain: str, *, trust_ad: bool) -> DaneReport:
        report = DaneReport(domain, no_dane("not resolved"), MAX_HOLD_SECONDS)
        try:
            report.verdict = await self._resolve(domain, report, trust_ad)
        except _Temp as exc:
            report.verdict = dane_temp(str(exc))
            report.ttl = TEMP_HOLD_SECONDS
        return report

    async def _resolve(self, domain: str, report: DaneReport, trust_ad: bool) -> DaneVerdict:
        mx = await self._lookup(report, domain, dns.rdatatype.MX)
        report.mx_status, report.mx_records = mx.status, mx.rdatas
        report.mx_secure = mx.secure and trust_ad
        if mx.status == "nxdomain":
            return NXDOMAIN
        if not report.mx_secure:
            return MX_NOT_AUTHENTICATED if trust_ad else MX_NOT_TRUSTED
        hosts = _mx_hosts(domain, mx)
        if hosts is None:
            return NULL_MX
        report.hosts = list(
            await asyncio.gather(*(self._host(report, name, pref) for pref, name in hosts))
        )
        return decide(domain, report.hosts)

    async def _host(self, report: DaneReport, name: str, preference: int) -> HostFacts:
        answers = [
            await self._lookup(report, name, rdtype)
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        ]
        found = [a for a in answers if a.status == "ok"]
        if not found:
            return HostFacts(name, preference, HostState.NO_ADDRESS)
        if not all(a.secure for a in found):
            return HostFacts(name, preference, HostState.INSECURE_ADDRESS)
        expanded = found[0].canonical
        candidates = [expanded, name] if expanded != name else [name]
        for base in candidates:
            owner = f"_{self._port}._tcp.{base}"
            tlsa = await self._lookup(report, owner, dns.rdatatype.TLSA)
            if tlsa.secure and tlsa.status == "ok":
                records = tuple(r for r in map(_parse_tlsa, tlsa.rdatas) if r is not None)
                return HostFacts(name, preference, host_state(records), owner, records)
        return HostFacts(name, preference, HostState.NO_TLSA, f"_{self._port}._tcp.{name}")

    async def _lookup(
        self, report: DaneReport, name: str, rdtype: dns.rdatatype.RdataType
    ) -> SecureAnswer:
        try:
            answer = await self._dns.secure(name, rdtype)
        except DnsLookupError as exc:
            raise _Temp(f"DANE: {exc.detail}") from None
        report.ttl = min(report.ttl, answer.ttl)
        return answer


def _mx_hosts(domain: str, mx: SecureAnswer) -> list[tuple[int, str]] | None:
    """(preference, host) best first; the domain itself for no MX; None for a null MX."""
    if mx.status != "ok":
        return [(0, domain)]  # RFC 5321 section 5.1 implicit MX; RFC 7672 section 2.2.2
    hosts: list[tuple[int, str]] = []
    for text in mx.rdatas:
        preference, _, exchange = text.partition(" ")
        host = exchange.rstrip(".").lower()
        if host and (int(preference), host) not in hosts:
            hosts.append((int(preference), host))
    if not hosts:
        return None
    return sorted(hosts)[:MAX_MX_HOSTS]


def _parse_tlsa(text: str) -> Tlsa | None:
    try:
        usage, selector, mtype, *data = text.split()
        return Tlsa(int(usage), int(selector), int(mtype), bytes.fromhex("".join(data)))
    except ValueError:
        return None


class ResolverValidation:
    """Whether the resolver's AD bit can be trusted; checked at start and periodically."""

    def __init__(
        self,
        dns_client: DnsClient,
        metrics: Metrics,
        *,
        secure_probe: str,
        bogus_probe: str,
        interval: float,
    ) -> None:
        self._dns = dns_client
        self._metrics = metrics
        self._secure_probe = secure_probe
        self._bogus_probe = bogus_probe
        self._interval = interval
        self._checked = asyncio.Event()
        self.validating = False
        self.detail = "not checked yet"

    def use(self, dns_client: DnsClient) -> None:
        """Probe through a new DNS client from the next check on (config reload)."""
        self._dns = dns_client

    async def trusted(self) -> bool:
        """Whether AD bits may be trusted; waits for the first check."""
        await self._checked.wait()
        return self.validating

    async def check(self) -> bool:
        ok, detail = await self._probe()
        if ok != self.validating or not self._checked.is_set():
            if ok:
                log.info("resolver validation check passed: %s", detail)
            else:
                log.error("resolver does not validate DNSSEC, DANE is off: %s", detail)
        self.validating, self.detail = ok, detail
        self._metrics.resolver_validation(ok)
        self._checked.set()
        return ok

    async def run(self) -> None:
        """Check now and then every ``interval`` seconds, until cancelled."""
        while True:
            await self.check()
            await asyncio.sleep(self._interval)

    async def _probe(self) -> tuple[bool, str]:
        try:
            signed = await self._dns.secure(self._secure_probe, dns.rdatatype.SOA)
        except DnsLookupError as exc:
            return False, f"signed probe {self._secure_probe}: {exc.detail}"
        if not signed.secure:
            return False, f"signed probe {self._secure_probe} SOA came back without the AD bit"
        if not self._bogus_probe:
            return True, f"{self._secure_probe} authenticated (no bogus probe configured)"
        try:
            await self._dns.secure(self._bogus_probe, dns.rdatatype.SOA)
        except DnsLookupError as exc:
            if exc.reason == "servfail":
                return True, f"{self._secure_probe} authenticated, {self._bogus_probe} refused"
            return False, f"bogus probe {self._bogus_probe}: {exc.detail}"
        return False, f"bogus probe {self._bogus_probe} was answered: bogus data is not rejected"
