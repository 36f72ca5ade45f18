"""The per-domain DANE decision of RFC 7672, from DNS facts the edge collected.

Postfix does the TLSA lookups and certificate checks itself; this decides which
level to ask it for, so a DANE domain is never answered ``secure`` (which would
switch Postfix's DANE off for it, RFC 8461 section 2) and never ``dane-only``
where that would defer mail needlessly (checklist section 8).

Rules, with RFC 7672 sections:

* MX lookup failed (SERVFAIL, bogus, timeout) → TEMP (section 2.1.2).
* NXDOMAIN or a null MX (``MX 0 .``, RFC 7505) → no DANE.
* Insecure MX RRset (AD bit clear) → no DANE decision here: never ``dane-only``
  (section 2.2.1); MTA-STS, if published, authenticates the MX names instead, and
  otherwise Postfix's own ``smtp_tls_security_level`` applies (docs/rfc-decisions.md).
* Secure MX (or a secure NODATA: the domain itself is the implicit MX, section
  2.2.2), then per MX host:
  - address lookup failed → TEMP (no silent downgrade);
  - no address → the host is not reachable and does not count (#137, #138);
  - address insecure → the host is not a DANE host (no TLSA lookup, #136);
  - address secure → TLSA: the first *secure* RRset among the candidate names
    (for a CNAME'd host: the expanded name, then the original, section 2.2.3)
    decides; an error on a candidate is TEMP, not a fall-through (#145);
    an insecure TLSA answer counts as no TLSA (#151).
* Every reachable host has a usable secure TLSA RRset → ``dane-only``; some host
  has a TLSA RRset (usable or not) → ``dane`` (Postfix authenticates where it
  can and requires encryption where the records are unusable, #134, #135, #148);
  no host has one → no DANE.

A TLSA record is usable when its usage is 2 or 3, selector 0 or 1, and matching
type 1 with 32 bytes, 2 with 64 bytes, or 0 with parsable DER (RFC 7672 section
3.1, RFC 6698 section 2.1, checklist #149).
"""

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    def usable(self) -> bool:
        """RFC 7672 section 3.1: DANE-TA(2) / DANE-EE(3), known selector and digest."""
        if self.usage not in (2, 3) or self.selector not in (0, 1):
            return False
        if self.mtype == 1:
            return len(self.data) == 32
        if self.mtype == 2:
            return len(self.data) == 64
        if self.mtype == 0:
            return _parses_as_der(self.selector, self.data)
        return False


def _parses_as_der(selector: int, data: bytes) -> bool:
    # imported here: matching type 0 is rare, and cryptography costs memory
    from cryptography import x509  # noqa: PLC0415
    from cryptography.exceptions import UnsupportedAlgorithm  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_der_public_key,
    )

    try:
        if selector == 0:
            x509.load_der_x509_certificate(data)
        else:
            load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


class HostState(enum.Enum):
    NO_ADDRESS = "no-address"  # not reachable: does not count
    INSECURE_ADDRESS = "insecure-address"  # not a DANE host
    NO_TLSA = "no-tlsa"  # secure address, no secure TLSA RRset
    USABLE = "usable"  # secure TLSA RRset with at least one usable record
    UNUSABLE = "unusable"  # secure TLSA RRset, no usable record


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What DNS said about one MX host; ``tlsa_name`` is the owner that decided."""

    name: str
    preference: int
    state: HostState
    tlsa_name: str = ""
    tlsa: tuple[Tlsa, ...] = ()


def host_state(tlsa: tuple[Tlsa, ...]) -> HostState:
    """The state of a host with a secure address and this secure TLSA RRset."""
    if not tlsa:
        return HostState.NO_TLSA
    return HostState.USABLE if any(r.usable() for r in tlsa) else HostState.UNUSABLE


class Level(enum.Enum):
    DANE_ONLY = "dane-only"
    DANE = "dane"


@dataclass(frozen=True, slots=True)
class DaneVerdict:
    """``level`` to answer, or ``temp`` (a reason to defer), or neither: no DANE."""

    level: Level | None
    temp: str | None
    reason: str


def no_dane(reason: str) -> DaneVerdict:
    return DaneVerdict(None, None, reason)


# "No DANE" verdicts are the common case and are cached per domain: one shared
# object per reason, so the reason text is not stored once per domain (the log
# line of each resolution names the domain).
NXDOMAIN = no_dane("the domain does not exist (NXDOMAIN)")
NULL_MX = no_dane("the domain has a null MX (RFC 7505)")
MX_NOT_AUTHENTICATED = no_dane("the MX RRset is not authenticated")
MX_NOT_TRUSTED = no_dane("the MX RRset is not trusted: the resolver does not validate")
NO_HOST_ADDRESS = no_dane("no MX host has an address")
NO_HOST_TLSA = no_dane("no MX host has a secure TLSA RRset")


def dane_temp(reason: str) -> DaneVerdict:
    return DaneVerdict(None, reason, reason)


def decide(domain: str, hosts: list[HostFacts]) -> DaneVerdict:
    """The level for ``domain`` whose MX RRset is secure and whose hosts are ``hosts``."""
    reachable = [h for h in hosts if h.state is not HostState.NO_ADDRESS]
    if not reachable:
        return NO_HOST_ADDRESS
    with_tlsa = [h for h in reachable if h.state in (HostState.USABLE, HostState.UNUSABLE)]
    if not with_tlsa:
        return NO_HOST_TLSA
    if all(h.state is HostState.USABLE for h in reachable):
        names = ", ".join(h.name for h in reachable)
        return DaneVerdict(Level.DANE_ONLY, None, f"every MX host has usable TLSA ({names})")
    without = [f"{h.name}: {h.state.value}" for h in reachable if h.state is not HostState.USABLE]
    return DaneVerdict(
        Level.DANE, None, "not every MX host has usable TLSA (" + "; ".join(without) + ")"
    )
