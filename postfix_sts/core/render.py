"""Rendering an MTA-STS policy as a Postfix ``smtp_tls_policy_maps`` answer.

RFC 8461 section 5: ``enforce`` requires a valid TLS connection to an MX matching
the policy, so it becomes ``OK secure match=<patterns> servername=hostname``
(``servername=hostname`` sends the MX name as SNI, section 7.1, Postfix 3.4+).
``testing`` must never block delivery, so by default it is NOTFOUND; a profile may
choose to enforce it.  ``none`` means no policy: NOTFOUND.

An MTA-STS ``*.example.com`` pattern is written as Postfix's ``.example.com``,
which matches any depth of subdomain (looser than section 4.1's single label,
checklist #105; documented in docs/rfc-decisions.md).
"""

from dataclasses import dataclass

from postfix_sts.core.answer import NOTFOUND, Answer, Status
from postfix_sts.core.sts_policy import Mode, StsPolicy


@dataclass(frozen=True, slots=True)
class Profile:
    """How answers are written for one socketmap map name.

    ``enforce_testing``: answer ``testing`` policies like ``enforce`` ones.
    ``servername``: add ``servername=hostname`` (needs Postfix 3.4 or later).
    """

    name: str = "default"
    enforce_testing: bool = False
    servername: bool = True


def postfix_match(mx: tuple[str, ...]) -> str:
    """The ``match=`` value: Postfix patterns, sorted, without repeats, ``:``-separated."""
    patterns = {p[1:] if p.startswith("*.") else p for p in mx}
    return ":".join(sorted(patterns))


def render_policy(policy: StsPolicy, profile: Profile) -> Answer:
    """The answer Postfix gets for a domain whose current policy is ``policy``."""
    if policy.mode is Mode.NONE:
        return NOTFOUND
    if policy.mode is Mode.TESTING and not profile.enforce_testing:
        return NOTFOUND
    text = f"secure match={postfix_match(policy.mx)}"
    if profile.servername:
        text += " servername=hostname"
    return Answer(Status.OK, text)
