"""Rendering an MTA-STS policy as a Postfix ``smtp_tls_policy_maps`` answer.

RFC 8461 section 5: ``enforce`` requires a valid TLS connection to an MX matching
the policy, so it becomes ``OK secure match=<patterns> servername=hostname``
(``servername=hostname`` sends the MX name as SNI, section 7.1, Postfix 3.4+).
``testing`` must never block delivery, so by default it is NOTFOUND; a profile may
choose to enforce it.  ``none`` means no policy: NOTFOUND.

An MTA-STS ``*.example.com`` pattern is written as Postfix's ``.example.com``,
which matches any depth of subdomain (looser than section 4.1's single label,
checklist #105; documented in docs/rfc-decisions.md).

With a profile's ``tlsrpt`` option, ``secure`` answers carry Postfix 3.10's TLSRPT
attributes (Postfix TLSRPT_README, checklist #172): ``policy_type=sts
policy_domain=<A-label domain>``, one ``mx_host_pattern=`` per policy ``mx`` and
one ``{ policy_string = <line> }`` per policy line.  With them, Postfix 3.10.5+
also enforces the single-label wildcard of section 4.1 (#105).  Postfix 3.9 and
older reject these attributes and defer the mail (#173), so the option is off by
default.  Policy lines that cannot be brace-quoted safely (containing ``{`` or
``}``) or are not printable ASCII are left out of ``policy_string`` (#174).
"""

from dataclasses import dataclass

from postfix_sts.core.answer import NOTFOUND, Answer, Status, temp
from postfix_sts.core.dane import DaneVerdict
from postfix_sts.core.sts_policy import Mode, StsPolicy


@dataclass(frozen=True, slots=True)
class Profile:
    """How answers are written for one socketmap map name.

    ``enforce_testing``: answer ``testing`` policies like ``enforce`` ones.
    ``servername``: add ``servername=hostname`` (needs Postfix 3.4 or later).
    ``tlsrpt``: add the TLSRPT attributes (needs Postfix 3.10 or later).
    """

    name: str = "default"
    enforce_testing: bool = False
    servername: bool = True
    tlsrpt: bool = False


def postfix_match(mx: tuple[str, ...]) -> str:
    """The ``match=`` value: Postfix patterns, sorted, without repeats, ``:``-separated."""
    patterns = {p[1:] if p.startswith("*.") else p for p in mx}
    return ":".join(sorted(patterns))


def render_policy(domain: str, policy: StsPolicy, profile: Profile) -> Answer:
    """The answer Postfix gets for ``domain`` whose current policy is ``policy``.

    With TLSRPT attributes, the answer's ``fallback`` is the same answer without
    them, for replies that would be too long otherwise.
    """
    if policy.mode is Mode.NONE:
        return NOTFOUND
    if policy.mode is Mode.TESTING and not profile.enforce_testing:
        return NOTFOUND
    text = f"secure match={postfix_match(policy.mx)}"
    if profile.servername:
        text += " servername=hostname"
    if profile.tlsrpt:
        return Answer(Status.OK, f"{text} {tlsrpt_attributes(domain, policy)}", fallback=text)
    return Answer(Status.OK, text)


def tlsrpt_attributes(domain: str, policy: StsPolicy) -> str:
    """Postfix's TLSRPT attributes for an STS policy (TLSRPT_README, checklist #172)."""
    parts = ["policy_type=sts", f"policy_domain={domain}"]
    parts.extend(f"mx_host_pattern={pattern}" for pattern in policy.mx)
    parts.extend(f"{{ policy_string = {line} }}" for line in _quotable_lines(policy.text))
    return " ".join(parts)


def _quotable_lines(text: str) -> list[str]:
    lines = (line.rstrip("\r").strip(" \t") for line in text.split("\n"))
    return [
        line
        for line in lines
        if line and line.isascii() and line.isprintable() and "{" not in line and "}" not in line
    ]


def render_dane(verdict: DaneVerdict) -> Answer | None:
    """``OK dane-only`` / ``OK dane`` / ``TEMP <reason>``; None when DANE does not apply.

    RFC 8461 section 2: DANE takes precedence over MTA-STS, so a DANE answer is
    final and the MTA-STS policy is not consulted (checklist #114, #116).
    """
    if verdict.level is not None:
        return Answer(Status.OK, verdict.level.value)
    if verdict.temp is not None:
        return temp(verdict.temp)
    return None
