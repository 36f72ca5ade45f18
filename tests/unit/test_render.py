"""Rendering a policy as a Postfix smtp_tls_policy_maps socketmap reply.

RFC 8461 section 5 and 7.1; checklist #98-#113 (rendering rows), #176, #179, #206-#208.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.answer import NOTFOUND, Answer, Status, perm, temp
from postfix_sts.core.netstring import MAX_REPLY_BYTES
from postfix_sts.core.render import Profile, postfix_match, render_policy
from postfix_sts.core.sts_policy import Mode, StsPolicy, parse_policy

DEFAULT = Profile()
STRICT_TESTING = Profile(name="strict", enforce_testing=True)
NO_SNI = Profile(name="old-postfix", servername=False)


def policy(mode: Mode, *mx: str, max_age: int = 86400) -> StsPolicy:
    return StsPolicy(mode=mode, max_age=max_age, mx=mx, text="")


def reply(p: StsPolicy, profile: Profile = DEFAULT) -> bytes:
    """The socketmap reply payload Postfix receives for ``p``."""
    return render_policy("example.com", p, profile).socketmap_payload()


# --- enforce ----------------------------------------------------------------------------


def test_enforce_renders_secure_with_match_and_servername() -> None:
    """#106: enforce -> ``OK secure match=<patterns> servername=hostname`` (section 5, 7.1)."""
    assert b"OK secure match=mail.example.com servername=hostname" == reply(
        policy(Mode.ENFORCE, "mail.example.com")
    )


def test_wildcard_mx_becomes_postfix_parent_domain_pattern() -> None:
    """#105: ``*.example.net`` is written as Postfix's ``.example.net``."""
    assert b"OK secure match=.example.net servername=hostname" == reply(
        policy(Mode.ENFORCE, "*.example.net")
    )


def test_checklist_enforce_example_renders_all_patterns_sorted() -> None:
    """#106: mx ``mail.example.com`` and ``*.example.net``; patterns in sorted order."""
    assert b"OK secure match=.example.net:mail.example.com servername=hostname" == reply(
        policy(Mode.ENFORCE, "mail.example.com", "*.example.net")
    )


def test_parsed_rfc_example_renders_as_expected() -> None:
    """#49 -> #106: from policy body to socketmap reply."""
    parsed = parse_policy(
        b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
        b"mx: backupmx.example.com\nmax_age: 604800\n"
    )
    expected = (
        b"OK secure match=.example.net:backupmx.example.com:mail.example.com servername=hostname"
    )
    assert expected == reply(parsed)


def test_match_order_does_not_depend_on_policy_order() -> None:
    """Stable output: the same set of mx gives the same reply, whatever their order."""
    forward = policy(Mode.ENFORCE, "a.example", "*.b.example", "c.example")
    backward = policy(Mode.ENFORCE, "c.example", "*.b.example", "a.example")
    assert reply(forward) == reply(backward)
    assert b"OK secure match=.b.example:a.example:c.example servername=hostname" == reply(forward)


def test_repeated_patterns_are_written_once() -> None:
    """#203: the match list has no repeats."""
    p = policy(Mode.ENFORCE, "b.example", "a.example", "b.example", "*.a.example", "*.a.example")
    assert b"OK secure match=.a.example:a.example:b.example servername=hostname" == reply(p)


def test_wildcard_and_exact_name_are_distinct_patterns() -> None:
    """#101: ``*.example.com`` does not cover ``example.com``; both stay in the list."""
    assert ".example.com:example.com" == postfix_match(("*.example.com", "example.com"))


def test_a_label_mx_is_rendered_as_a_label() -> None:
    """#208: match= patterns are A-labels."""
    parsed = parse_policy(b"version: STSv1\nmode: enforce\nmx: *.XN--BCHER-KVA.example\nmax_age: 1")
    assert b"OK secure match=.xn--bcher-kva.example servername=hostname" == reply(parsed)


def test_servername_can_be_switched_off_for_old_postfix() -> None:
    """#206: ``servername=`` needs Postfix 3.4+; a profile may leave it out."""
    assert b"OK secure match=mail.example.com" == reply(
        policy(Mode.ENFORCE, "mail.example.com"), NO_SNI
    )


def test_enforce_answer_is_ok_status() -> None:
    answer = render_policy("example.com", policy(Mode.ENFORCE, "mx.example"), DEFAULT)
    assert Answer(Status.OK, "secure match=mx.example servername=hostname") == answer


# --- testing and none -------------------------------------------------------------------


def test_testing_is_notfound_by_default() -> None:
    """#107 [MUST NOT block]: a testing policy is not enforced."""
    assert NOTFOUND == render_policy(
        "example.com", policy(Mode.TESTING, "mail.example.com"), DEFAULT
    )


def test_testing_is_secure_with_a_profile_that_enforces_testing() -> None:
    """#107: a profile may choose to enforce testing policies (SNA's strict_testing)."""
    assert b"OK secure match=mail.example.com servername=hostname" == reply(
        policy(Mode.TESTING, "mail.example.com"), STRICT_TESTING
    )


def test_testing_enforced_without_servername() -> None:
    profile = Profile(enforce_testing=True, servername=False)
    assert b"OK secure match=mail.example.com" == reply(
        policy(Mode.TESTING, "mail.example.com"), profile
    )


@pytest.mark.parametrize("profile", [DEFAULT, STRICT_TESTING, NO_SNI])
@pytest.mark.parametrize("mx", [(), ("mail.example.com",)])
def test_none_is_notfound_with_every_profile(profile: Profile, mx: tuple[str, ...]) -> None:
    """#108, #207: mode none means no policy -> NOTFOUND (never ``may``)."""
    assert NOTFOUND == render_policy("example.com", policy(Mode.NONE, *mx), profile)


def test_notfound_payload_has_the_documented_trailing_space() -> None:
    """#176: ``NOTFOUND `` (socketmap_table(5))."""
    assert b"NOTFOUND " == NOTFOUND.socketmap_payload()


def test_testing_default_reply_is_the_notfound_payload() -> None:
    """#107, #176: the bytes Postfix sees for a testing policy."""
    assert b"NOTFOUND " == reply(policy(Mode.TESTING, "mail.example.com"))


# --- other answers ----------------------------------------------------------------------


def test_temp_and_perm_payloads() -> None:
    """#177, #178: status words are exact and upper case."""
    assert b"TEMP dns lookup failed" == temp("dns lookup failed").socketmap_payload()
    assert b"PERM bad request" == perm("bad request").socketmap_payload()


def test_temp_reason_is_one_line() -> None:
    """A reply is one line: newlines and runs of whitespace in a reason collapse."""
    assert b"TEMP a b c" == temp("a\nb \r\n\t c ").socketmap_payload()


# --- the 100 000-byte reply limit -------------------------------------------------------


def test_reply_of_exactly_the_limit_is_sent_as_is() -> None:
    """#179: a 100 000-byte payload is accepted by Postfix."""
    text = "x" * (MAX_REPLY_BYTES - len("OK "))
    payload = Answer(Status.OK, text).socketmap_payload()
    assert b"OK " + text.encode() == payload
    assert 100_000 == len(payload)


def test_reply_over_the_limit_becomes_temp() -> None:
    """#179: 100 001 bytes would fail in Postfix; answer TEMP instead (as TLP does)."""
    payload = Answer(Status.OK, "x" * (MAX_REPLY_BYTES - len("OK ") + 1)).socketmap_payload()
    assert payload.startswith(b"TEMP ")
    assert len(payload) <= MAX_REPLY_BYTES


def test_reply_limit_counts_bytes_not_characters() -> None:
    """#179: the limit is in bytes; a multi-byte character counts for its UTF-8 length."""
    text = "é" * ((MAX_REPLY_BYTES - len("OK ")) // 2 + 1)
    assert len("OK " + text) <= MAX_REPLY_BYTES
    assert Answer(Status.OK, text).socketmap_payload().startswith(b"TEMP ")


def test_policy_with_many_mx_still_fits_the_reply_limit() -> None:
    """#179: an oversized rendering is never sent."""
    mx = tuple(f"mx{i:06d}.{'a' * 40}.example" for i in range(3000))
    payload = reply(policy(Mode.ENFORCE, *mx))
    assert len(payload) <= MAX_REPLY_BYTES


_LDH_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
mx_patterns = st.builds(
    lambda star, labels: ("*." if star else "") + ".".join(labels),
    st.booleans(),
    st.lists(_LDH_LABEL, min_size=1, max_size=4),
)


@given(
    st.sampled_from(list(Mode)),
    st.lists(mx_patterns, min_size=1, max_size=30),
    st.sampled_from([DEFAULT, STRICT_TESTING, NO_SNI]),
)
def test_rendered_reply_is_well_formed_and_within_limit(
    mode: Mode, mx: list[str], profile: Profile
) -> None:
    """#179, #203: any rendering fits 100 000 bytes; OK replies list each pattern once."""
    payload = reply(policy(mode, *mx), profile)
    assert len(payload) <= MAX_REPLY_BYTES
    if payload.startswith(b"OK "):
        words = payload.decode().split(" ")
        assert "secure" == words[1]
        patterns = words[2].removeprefix("match=").split(":")
        assert sorted(set(patterns)) == patterns
        assert {p.removeprefix("*") for p in mx} == set(patterns)


@given(
    st.sampled_from(list(Status)),
    st.characters(exclude_categories=["Cs"]),
    st.integers(min_value=0, max_value=150_000),
)
def test_any_answer_payload_is_within_the_limit(status: Status, char: str, length: int) -> None:
    """#179: Answer.socketmap_payload never exceeds Postfix's reply limit."""
    payload = Answer(status, char * length).socketmap_payload()
    assert len(payload) <= MAX_REPLY_BYTES
