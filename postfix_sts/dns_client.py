"""DNS at the edge: dnspython's async resolver, translated into postfix-sts types.

Only this module imports dnspython's resolver.  Answers become plain tuples and
:class:`TxtAnswer`; every dnspython failure becomes :class:`DnsLookupError` with a
reason naming the failure (``servfail``, ``timeout`` or ``dns-error``).
dnspython's own cache is off: postfix-sts caches decisions, not raw records.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from postfix_sts.errors import ConfigError, DnsLookupError
from postfix_sts.metrics import Metrics

#: Upper bound on TXT records considered from one RRset (hostile zones).
MAX_TXT_RECORDS = 64
#: Upper bound on addresses tried for one host.
MAX_ADDRESSES = 16
#: Upper bound on records taken from one RRset on the DANE path (hostile zones).
MAX_RECORDS = 64


@dataclass(frozen=True, slots=True)
class SecureAnswer:
    """An answer with its DNSSEC status: ``secure`` is the AD bit of the response.

    ``rdatas`` are presentation-format records (empty for nxdomain/nodata);
    ``canonical`` is the name after CNAMEs; ``ttl`` the smallest TTL of the chain
    or, for a negative answer, the negative TTL (RFC 2308 section 5).  The AD bit
    is only meaningful from a trusted validating resolver (RFC 7672 section 2.1.1).
    """

    status: str
    secure: bool
    rdatas: tuple[str, ...]
    canonical: str
    ttl: int


@dataclass(frozen=True, slots=True)
class TxtAnswer:
    """A TXT RRset as lists of character-strings; empty with ``status`` nxdomain/nodata."""

    records: tuple[tuple[bytes, ...], ...]
    status: str
    ttl: int


class DnsClient:
    """Asynchronous lookups against the configured (or the system's) resolver."""

    def __init__(
        self, nameservers: Sequence[tuple[str, int]], timeout: float, metrics: Metrics
    ) -> None:
        self._metrics = metrics
        try:
            resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigError(
                f"[dns] nameservers: none given and no system resolver: {exc}"
            ) from None
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(ip, port) for ip, port in nameservers
            ]
        resolver.lifetime = timeout
        resolver.cache = None
        self._resolver = resolver
        dnssec = dns.asyncresolver.Resolver(configure=False)
        dnssec.nameservers = resolver.nameservers
        dnssec.lifetime = timeout
        dnssec.cache = None
        dnssec.use_edns(0, dns.flags.DO, 1232)
        dnssec.flags = dns.flags.RD | dns.flags.AD
        self._dnssec = dnssec

    async def txt(self, name: str) -> TxtAnswer:
        """The TXT RRset at ``name`` (CNAMEs followed by the resolver).

        ``ttl`` is the RRset's TTL, or for NXDOMAIN/NODATA the negative TTL:
        min(SOA TTL, SOA MINIMUM) from the authority section (RFC 2308 section 5).
        """
        answer = await self._resolve(name, dns.rdatatype.TXT)
        if isinstance(answer, dns.resolver.NXDOMAIN):
            return TxtAnswer((), "nxdomain", _nxdomain_ttl(answer))
        if answer.rrset is None:
            return TxtAnswer((), "nodata", negative_ttl(answer.response))
        records = tuple(tuple(rdata.strings) for rdata in list(answer.rrset)[:MAX_TXT_RECORDS])
        return TxtAnswer(records, "ok", answer.chaining_result.minimum_ttl)

    async def addresses(self, name: str) -> list[str]:
        """IPv4 then IPv6 addresses of ``name``; empty if it has none."""
        found: list[str] = []
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            answer = await self._resolve(name, rdtype)
            if isinstance(answer, dns.resolver.Answer) and answer.rrset is not None:
                found.extend(rdata.address for rdata in answer.rrset)
        return found[:MAX_ADDRESSES]

    async def secure(self, name: str, rdtype: dns.rdatatype.RdataType) -> SecureAnswer:
        """Look ``name`` up with the DO bit set and report whether it was authenticated."""
        answer = await self._resolve(name, rdtype, self._dnssec)
        if isinstance(answer, dns.resolver.NXDOMAIN):
            responses: dict[dns.name.Name, dns.message.Message] = answer.kwargs.get("responses", {})
            secure = bool(responses) and all(r.flags & dns.flags.AD for r in responses.values())
            return SecureAnswer("nxdomain", secure, (), name, _nxdomain_ttl(answer))
        secure = bool(answer.response.flags & dns.flags.AD)
        canonical = answer.canonical_name.to_text(omit_final_dot=True)
        if answer.rrset is None:
            return SecureAnswer("nodata", secure, (), canonical, negative_ttl(answer.response))
        rdatas = tuple(rdata.to_text() for rdata in list(answer.rrset)[:MAX_RECORDS])
        return SecureAnswer("ok", secure, rdatas, canonical, answer.chaining_result.minimum_ttl)

    async def _resolve(
        self,
        name: str,
        rdtype: dns.rdatatype.RdataType,
        resolver: dns.asyncresolver.Resolver | None = None,
    ) -> dns.resolver.Answer | dns.resolver.NXDOMAIN:
        rtype = dns.rdatatype.to_text(rdtype)
        what = f"{rtype} {name}"
        try:
            answer = await (resolver or self._resolver).resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN as nxdomain:
            self._metrics.dns_query(rtype, "nxdomain")
            return nxdomain
        except dns.resolver.LifetimeTimeout:
            self._metrics.dns_query(rtype, "timeout")
            raise DnsLookupError(f"{what}: timed out", reason="timeout") from None
        except dns.resolver.NoNameservers as exc:
            self._metrics.dns_query(rtype, "servfail")
            raise DnsLookupError(f"{what}: {_servfail_detail(exc)}", reason="servfail") from None
        except dns.exception.DNSException as exc:
            self._metrics.dns_query(rtype, "error")
            raise DnsLookupError(f"{what}: {exc}", reason="dns-error") from None
        self._metrics.dns_query(rtype, "ok" if answer.rrset is not None else "nodata")
        return answer


def negative_ttl(response: dns.message.Message) -> int:
    """RFC 2308 section 5: a negative answer holds for min(SOA TTL, SOA MINIMUM)."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset) > 0:
            soa = rrset[0]
            return int(min(rrset.ttl, soa.minimum))
    return 0


def _nxdomain_ttl(nxdomain: dns.resolver.NXDOMAIN) -> int:
    responses: dict[dns.name.Name, dns.message.Message] = nxdomain.kwargs.get("responses", {})
    return min((negative_ttl(r) for r in responses.values()), default=0)


def _servfail_detail(exc: dns.resolver.NoNameservers) -> str:
    errors = exc.kwargs.get("errors") or []
    parts = [f"{server} answered {error}" for server, _tcp, _port, error, *_ in errors]
    return "; ".join(parts) if parts else "no nameserver gave an answer"
