"""Rendering a DANE verdict as a Postfix smtp_tls_policy_maps socketmap reply.

RFC 8461 section 2 (DANE takes precedence over MTA-STS) and RFC 7672 sections 2.1.2
and 2.2; checklist #114, #116, #128, #134, #148, #176-#178.
"""

from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.answer import Status
from postfix_sts.core.dane import (
    DaneVerdict,
    HostFacts,
    HostState,
    Level,
    dane_temp,
    decide,
    no_dane,
)
from postfix_sts.core.render import render_dane


def test_dane_only_verdict_renders_ok_dane_only() -> None:
    """#128: every MX host has usable TLSA -> ``OK dane-only`` (RFC 7672 section 2.2.1)."""
    answer = render_dane(DaneVerdict(Level.DANE_ONLY, None, "every MX host has usable TLSA"))
    assert answer is not None
    assert b"OK dane-only" == answer.socketmap_payload()
    assert Status.OK == answer.status
    assert "dane-only" == answer.kind


def test_dane_verdict_renders_ok_dane() -> None:
    """#134, #148: some TLSA but not usable everywhere -> ``OK dane`` (RFC 7672 section 2.2)."""
    answer = render_dane(DaneVerdict(Level.DANE, None, "not every MX host has usable TLSA"))
    assert answer is not None
    assert b"OK dane" == answer.socketmap_payload()
    assert Status.OK == answer.status
    assert "dane" == answer.kind


def test_temp_verdict_renders_temp_with_the_reason() -> None:
    """#116, #131: a DANE lookup failure defers the mail (RFC 7672 2.1.2), never a downgrade."""
    answer = render_dane(dane_temp("DANE: MX example.com: SERVFAIL"))
    assert answer is not None
    assert b"TEMP DANE: MX example.com: SERVFAIL" == answer.socketmap_payload()
    assert Status.TEMP == answer.status
    assert "temp" == answer.kind


def test_temp_reason_newlines_are_folded_into_one_line() -> None:
    """#178: a socketmap reason is one line; newlines, CRs, tabs and runs become one space."""
    answer = render_dane(dane_temp("DANE: TLSA lookup\n_25._tcp.mx.example.com:\r\n\tSERVFAIL  "))
    assert answer is not None
    assert b"TEMP DANE: TLSA lookup _25._tcp.mx.example.com: SERVFAIL" == (
        answer.socketmap_payload()
    )


def test_no_dane_verdict_renders_nothing() -> None:
    """#115, #130: DANE does not apply -> None, so the MTA-STS policy (or NOTFOUND) answers."""
    assert render_dane(no_dane("no MX host of example.com has a secure TLSA RRset")) is None


def test_dane_level_wins_over_the_reason_text() -> None:
    """The reason is for logs only; the reply carries the level and nothing else."""
    answer = render_dane(DaneVerdict(Level.DANE, None, "mx2.example.com: no-tlsa\nsecure"))
    assert answer is not None
    assert b"OK dane" == answer.socketmap_payload()


def test_decided_mixed_mx_set_renders_ok_dane() -> None:
    """#134 end to end: usable + no-TLSA hosts -> ``OK dane``, not ``dane-only``."""
    verdict = decide(
        "example.com",
        [
            HostFacts("mx1.example.com", 10, HostState.USABLE),
            HostFacts("mx2.example.com", 20, HostState.NO_TLSA),
        ],
    )
    answer = render_dane(verdict)
    assert answer is not None
    assert b"OK dane" == answer.socketmap_payload()


def test_decided_full_dane_renders_ok_dane_only() -> None:
    """#128 end to end: all reachable hosts usable -> ``OK dane-only``."""
    verdict = decide(
        "example.com",
        [
            HostFacts("mx1.example.com", 10, HostState.USABLE),
            HostFacts("gone.example.com", 20, HostState.NO_ADDRESS),
        ],
    )
    answer = render_dane(verdict)
    assert answer is not None
    assert b"OK dane-only" == answer.socketmap_payload()


_hosts = st.lists(
    st.builds(
        HostFacts,
        st.sampled_from(["mx1.example.com", "mx2.example.com", "example.com"]),
        st.integers(min_value=0, max_value=65535),
        st.sampled_from(list(HostState)),
    ),
    max_size=6,
)


@given(_hosts)
def test_decided_verdict_is_never_rendered_as_secure(hosts: list[HostFacts]) -> None:
    """#114: a DANE domain never gets ``secure`` (it would switch Postfix's DANE off).

    Whatever ``decide`` says renders as ``OK dane-only``, ``OK dane`` or nothing at all.
    """
    answer = render_dane(decide("example.com", hosts))
    payload = None if answer is None else answer.socketmap_payload()
    assert payload in (None, b"OK dane-only", b"OK dane")


@given(st.text(max_size=500))
def test_temp_reply_is_always_one_temp_line(reason: str) -> None:
    """#178: any reason becomes a single-line ``TEMP`` reply Postfix can read."""
    answer = render_dane(dane_temp(reason))
    assert answer is not None
    payload = answer.socketmap_payload()
    assert Status.TEMP == answer.status
    assert payload.startswith(b"TEMP ")
    assert b"\n" not in payload
    assert b"\r" not in payload
    assert " ".join(reason.split()).encode() == payload.removeprefix(b"TEMP ")
