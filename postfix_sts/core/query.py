"""From a Postfix policy-map key to the policy domain to look up.

Postfix asks ``smtp_tls_policy_maps`` with the next hop: a domain, a parent-domain
probe ``.example.com`` after a NOTFOUND (checklist #120), or a bracketed / ``:port``
next hop that is not an MX-resolved domain (checklist #111, #112).  Only a plain,
valid, multi-label DNS domain is a policy domain (RFC 8461 section 3.4); for every
other key the answer is NOTFOUND at once, with no DNS or HTTPS traffic.
"""

import re
from dataclasses import dataclass

import idna

# RFC 5321 section 4.1.2 / RFC 1035: Let-dig [Ldh-str], at most 63 octets a label.
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ASCII_DOMAIN = re.compile(rf"{_LDH_LABEL}(?:\.{_LDH_LABEL})+")
_MAX_DOMAIN_LENGTH = 253


@dataclass(frozen=True, slots=True)
class NotADomain:
    """The key names no policy domain; ``reason`` says why (for the debug log)."""

    reason: str


def normalize_key(key: str) -> str | NotADomain:
    """Return the lower-case A-label policy domain for ``key``, or why it has none.

    Case is folded (Postfix does not fold socketmap keys, checklist #122), one
    trailing dot is dropped (#113), and a U-label domain is converted to its
    A-label with IDNA 2008 / UTS #46 (#209; Python's ``idna`` codec is IDNA 2003).
    """
    if not key:
        return NotADomain("empty key")
    if key[0] == ".":
        return NotADomain("parent-domain probe")
    if key[0] == "[":
        return NotADomain("bracketed next hop (address literal or no MX lookup)")
    if ":" in key:
        return NotADomain("next hop with a port")
    name = key[:-1] if key[-1] == "." else key
    if name.isascii():
        name = name.lower()
        if "xn--" in name:
            return _from_idna(name)
        return _check_ascii(name)
    return _from_idna(name)


def _check_ascii(name: str) -> str | NotADomain:
    if len(name) > _MAX_DOMAIN_LENGTH or _ASCII_DOMAIN.fullmatch(name) is None:
        return NotADomain("not a valid multi-label domain name")
    if name.rpartition(".")[2].isdigit():
        return NotADomain("IP address, not a domain")
    return name


def _from_idna(name: str) -> str | NotADomain:
    try:
        alabel = idna.encode(name, uts46=True).decode("ascii")
        idna.decode(alabel)  # rejects A-labels that are not valid IDNA 2008
    except idna.IDNAError as exc:
        return NotADomain(f"not a valid internationalized domain name ({exc})")
    return _check_ascii(alabel)
