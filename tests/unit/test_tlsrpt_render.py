"""Postfix TLSRPT attributes in ``secure`` answers (Postfix 3.10+, TLSRPT_README).

Checklist #172 (the attributes), #173 (opt-in: older Postfix defers the mail),
#174 (lines with braces are left out of ``policy_string``), #204 (Postfix's
``{ name = value }`` syntax) and #198/#206-#208 (reply size limits, through the
answer's ``fallback``).  The attributes are parsed back with a small parser of
Postfix's policy-value syntax to check what Postfix would see.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.answer import NOTFOUND, Status
from postfix_sts.core.netstring import MAX_REPLY_BYTES
from postfix_sts.core.render import Profile, render_policy
from postfix_sts.core.sts_policy import Mode, StsPolicy, parse_policy
from postfix_sts.core.tcp_table import encode_reply

TLSRPT = Profile(name="tlsrpt", tlsrpt=True)
PLAIN = Profile(name="plain")
TLSRPT_STRICT = Profile(name="tlsrpt-strict", tlsrpt=True, enforce_testing=True)

RFC_EXAMPLE_BODY = (
    b"version: STSv1\n"
    b"mode: enforce\n"
    b"mx: mail.example.com\n"
    b"mx: *.example.net\n"
    b"mx: backupmx.example.com\n"
    b"max_age: 604800\n"
)


def split_postfix_tokens(value: str) -> list[str]:
    """Split a policy value like Postfix's ``mystrtokq``: whitespace and commas
    separate tokens, except inside ``{ ... }``."""
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for char in value:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced '}}' in {value!r}")
        if depth == 0 and (char.isspace() or char == ","):
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if depth != 0:
        raise ValueError(f"unclosed '{{' in {value!r}")
    if current:
        tokens.append("".join(current))
    return tokens


def parse_postfix_policy(value: str) -> tuple[str, list[tuple[str, str]]]:
    """The security level and the ``name=value`` / ``{ name = value }`` attributes (#204).

    Inside braces, whitespace after ``{``, around ``=`` and before ``}`` is ignored.
    """
    level, *rest = split_postfix_tokens(value)
    attributes: list[tuple[str, str]] = []
    for token in rest:
        if token.startswith("{"):
            if not token.endswith("}") or "{" in token[1:-1] or "}" in token[1:-1]:
                raise ValueError(f"bad braced attribute {token!r}")
            name, sep, attr_value = token[1:-1].partition("=")
            name, attr_value = name.strip(), attr_value.strip()
        else:
            name, sep, attr_value = token.partition("=")
        if not sep or not name:
            raise ValueError(f"attribute without '=' in {token!r}")
        attributes.append((name, attr_value))
    return level, attributes


def values(attributes: list[tuple[str, str]], name: str) -> list[str]:
    return [v for n, v in attributes if n == name]


def policy_lines(body: bytes) -> list[str]:
    return [line.rstrip("\r") for line in body.decode().split("\n") if line.rstrip("\r")]


# --- the exact answer ---------------------------------------------------------------------


def test_enforce_policy_with_tlsrpt_renders_exact_attributes() -> None:
    """#172: ``policy_type=sts policy_domain=<domain>``, one ``mx_host_pattern`` per mx
    in policy order, one ``{ policy_string = <line> }`` per policy line."""
    answer = render_policy("example.com", parse_policy(RFC_EXAMPLE_BODY), TLSRPT)
    assert Status.OK == answer.status
    assert (
        "secure match=.example.net:backupmx.example.com:mail.example.com servername=hostname"
        " policy_type=sts policy_domain=example.com"
        " mx_host_pattern=mail.example.com"
        " mx_host_pattern=*.example.net"
        " mx_host_pattern=backupmx.example.com"
        " { policy_string = version: STSv1 }"
        " { policy_string = mode: enforce }"
        " { policy_string = mx: mail.example.com }"
        " { policy_string = mx: *.example.net }"
        " { policy_string = mx: backupmx.example.com }"
        " { policy_string = max_age: 604800 }"
    ) == answer.text


def test_enforce_policy_with_tlsrpt_socketmap_payload_is_ok_plus_text() -> None:
    """#172 over socketmap: ``OK `` then the whole value."""
    answer = render_policy("example.com", parse_policy(RFC_EXAMPLE_BODY), TLSRPT)
    assert ("OK " + answer.text).encode() == answer.socketmap_payload()


def test_enforce_policy_with_tlsrpt_tcp_table_reply_is_200_plus_text() -> None:
    """#172 over tcp_table (#192): ``200 `` then the value; nothing here needs encoding."""
    answer = render_policy("example.com", parse_policy(RFC_EXAMPLE_BODY), TLSRPT)
    assert ("200 " + answer.text + "\n").encode() == encode_reply(answer)


def test_policy_domain_is_the_domain_looked_up() -> None:
    """#172: ``policy_domain=<A-label domain>``, the domain Postfix asked about."""
    answer = render_policy("xn--bcher-kva.example", parse_policy(RFC_EXAMPLE_BODY), TLSRPT)
    _level, attributes = parse_postfix_policy(answer.text)
    assert ["xn--bcher-kva.example"] == values(attributes, "policy_domain")


# --- parsing the attributes back ----------------------------------------------------------


def test_attributes_parse_back_to_the_policy() -> None:
    """#172/#204: Postfix sees the level, match, servername and one attribute per item."""
    policy = parse_policy(RFC_EXAMPLE_BODY)
    level, attributes = parse_postfix_policy(render_policy("example.com", policy, TLSRPT).text)
    assert "secure" == level
    assert [".example.net:backupmx.example.com:mail.example.com"] == values(attributes, "match")
    assert ["hostname"] == values(attributes, "servername")
    assert ["sts"] == values(attributes, "policy_type")
    assert ["example.com"] == values(attributes, "policy_domain")
    assert list(policy.mx) == values(attributes, "mx_host_pattern")
    assert policy_lines(RFC_EXAMPLE_BODY) == values(attributes, "policy_string")


def test_crlf_policy_lines_have_no_carriage_return_in_policy_string() -> None:
    """RFC 8461 section 3.2 allows CRLF; the CR is not part of the line."""
    body = RFC_EXAMPLE_BODY.replace(b"\n", b"\r\n")
    _level, attributes = parse_postfix_policy(
        render_policy("example.com", parse_policy(body), TLSRPT).text
    )
    assert policy_lines(RFC_EXAMPLE_BODY) == values(attributes, "policy_string")


def test_trailing_whitespace_of_a_line_is_not_in_policy_string() -> None:
    """#204: whitespace before ``}`` is ignored by Postfix anyway; the line is trimmed."""
    body = b"version: STSv1\nmode: enforce\nmx: mail.example.com  \nmax_age: 86400\t\n"
    _level, attributes = parse_postfix_policy(
        render_policy("example.com", parse_policy(body), TLSRPT).text
    )
    assert ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 86400"] == (
        values(attributes, "policy_string")
    )


def test_extension_line_with_commas_and_spaces_stays_one_policy_string() -> None:
    """#204: inside braces, commas and spaces do not split the value."""
    body = RFC_EXAMPLE_BODY + b"note: a, b and c\n"
    _level, attributes = parse_postfix_policy(
        render_policy("example.com", parse_policy(body), TLSRPT).text
    )
    assert "note: a, b and c" == values(attributes, "policy_string")[-1]


# --- lines left out (#174) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "comment: {café}".encode(),
        b"comment: {x}",
        b"comment: a}b",
        b"comment: a{b",
        "comment: café".encode(),
        "comment: 日本".encode(),
    ],
)
def test_line_with_braces_or_non_ascii_is_left_out_of_policy_string(line: bytes) -> None:
    """#174: such a line cannot be brace-quoted safely; the policy stays valid and the
    other lines are kept."""
    body = RFC_EXAMPLE_BODY + line + b"\n"
    answer = render_policy("example.com", parse_policy(body), TLSRPT)
    _level, attributes = parse_postfix_policy(answer.text)
    assert policy_lines(RFC_EXAMPLE_BODY) == values(attributes, "policy_string")


def test_line_left_out_in_the_middle_keeps_the_order_of_the_others() -> None:
    """#174: only the unsafe line goes; the rest keep policy order."""
    body = b"version: STSv1\ncomment: {x}\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
    _level, attributes = parse_postfix_policy(
        render_policy("example.com", parse_policy(body), TLSRPT).text
    )
    assert ["version: STSv1", "mode: enforce", "mx: mail.example.com", "max_age: 86400"] == (
        values(attributes, "policy_string")
    )


_EXT_VALUE_CHARS = st.one_of(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    st.sampled_from(["é", "€", "日", "{", "}", "%", ","]),
)
_EXT_VALUES = st.text(_EXT_VALUE_CHARS, min_size=1, max_size=12).flatmap(
    lambda first: st.text(st.one_of(_EXT_VALUE_CHARS, st.just(" ")), max_size=12).map(
        lambda rest: first + rest.rstrip(" ")
    )
)
_EXT_LINES = st.lists(
    st.tuples(st.sampled_from(["note", "ext", "x-1", "comment"]), _EXT_VALUES).map(
        lambda nv: f"{nv[0]}: {nv[1]}"
    ),
    max_size=6,
)


@given(_EXT_LINES)
def test_policy_strings_are_exactly_the_safe_policy_lines(extensions: list[str]) -> None:
    """#172/#174/#204: every ASCII line without braces appears once, in order, and the
    whole value still parses as Postfix policy syntax."""
    body = RFC_EXAMPLE_BODY + "".join(f"{line}\n" for line in extensions).encode()
    answer = render_policy("example.com", parse_policy(body), TLSRPT)
    _level, attributes = parse_postfix_policy(answer.text)  # raises on unbalanced braces
    expected = [
        line
        for line in policy_lines(body)
        if line.isascii() and "{" not in line and "}" not in line
    ]
    assert expected == values(attributes, "policy_string")


# --- fallback and size limits -------------------------------------------------------------


def test_fallback_is_the_answer_without_tlsrpt_attributes() -> None:
    """#172/#198: the short form is exactly what a profile without TLSRPT answers."""
    policy = parse_policy(RFC_EXAMPLE_BODY)
    with_tlsrpt = render_policy("example.com", policy, TLSRPT)
    without = render_policy("example.com", policy, PLAIN)
    assert without.text == with_tlsrpt.fallback
    assert with_tlsrpt.text.startswith(without.text + " policy_type=sts ")


def test_fallback_without_servername_matches_that_profile() -> None:
    """The short form follows the profile's other options."""
    policy = parse_policy(RFC_EXAMPLE_BODY)
    old = render_policy("example.com", policy, Profile(name="old", servername=False, tlsrpt=True))
    assert "secure match=.example.net:backupmx.example.com:mail.example.com" == old.fallback


def test_profile_without_tlsrpt_has_no_attributes() -> None:
    """#173: Postfix 3.9 and older defer mail on these attributes, so they are opt-in."""
    answer = render_policy("example.com", parse_policy(RFC_EXAMPLE_BODY), Profile())
    assert "policy_type" not in answer.text
    assert None is answer.fallback


def _padded_policy(pad: int) -> StsPolicy:
    """A policy whose last line is ``x: `` plus ``pad`` letters."""
    text = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\nx: " + "a" * pad
    return StsPolicy(Mode.ENFORCE, 86400, ("mail.example.com",), text)


def test_socketmap_payload_at_the_limit_keeps_the_attributes() -> None:
    """#198 analogue for socketmap: a payload of exactly 100,000 bytes is sent in full."""
    overhead = len(render_policy("example.com", _padded_policy(1), TLSRPT).socketmap_payload()) - 1
    answer = render_policy("example.com", _padded_policy(MAX_REPLY_BYTES - overhead), TLSRPT)
    payload = answer.socketmap_payload()
    assert MAX_REPLY_BYTES == len(payload)
    assert ("OK " + answer.text).encode() == payload


def test_socketmap_payload_over_the_limit_falls_back_to_the_short_form() -> None:
    """Postfix refuses socketmap replies over 100,000 bytes; drop the TLSRPT attributes."""
    overhead = len(render_policy("example.com", _padded_policy(1), TLSRPT).socketmap_payload()) - 1
    answer = render_policy("example.com", _padded_policy(MAX_REPLY_BYTES - overhead + 1), TLSRPT)
    assert b"OK secure match=mail.example.com servername=hostname" == answer.socketmap_payload()


def test_large_parsed_policy_falls_back_on_socketmap() -> None:
    """A 64 KiB policy of short lines yields over 300 KB of attributes: fallback."""
    body = b"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
    body += b"e: v\n" * ((64 * 1024 - len(body)) // 5)
    answer = render_policy("example.com", parse_policy(body), TLSRPT)
    assert len(answer.text) > MAX_REPLY_BYTES
    assert b"OK secure match=mail.example.com servername=hostname" == answer.socketmap_payload()


def test_tcp_table_reply_with_many_mx_falls_back_to_the_short_form() -> None:
    """#198: over 4096 bytes on tcp_table, the TLSRPT attributes are dropped."""
    mx = [f"mx{i:03}.example.com" for i in range(150)]
    body = b"version: STSv1\nmode: enforce\nmax_age: 86400\n" + b"".join(
        f"mx: {m}\n".encode() for m in mx
    )
    answer = render_policy("example.com", parse_policy(body), TLSRPT)
    assert answer.fallback is not None
    assert len(answer.fallback) < 4096 < len(answer.text)
    assert f"200 {answer.fallback}\n".encode() == encode_reply(answer)


# --- modes without enforcement ------------------------------------------------------------


@pytest.mark.parametrize("mode", [b"testing", b"none"])
def test_testing_and_none_are_not_found_even_with_tlsrpt(mode: bytes) -> None:
    """RFC 8461 section 5: testing must not block delivery, none is no policy; #172's
    attributes are only for ``secure`` answers."""
    body = RFC_EXAMPLE_BODY.replace(b"mode: enforce", b"mode: " + mode)
    assert NOTFOUND == render_policy("example.com", parse_policy(body), TLSRPT)


def test_none_is_not_found_even_when_testing_is_enforced() -> None:
    """RFC 8461 section 5 item 3: ``none`` ends enforcement in every profile."""
    body = b"version: STSv1\nmode: none\nmax_age: 86400\n"
    assert NOTFOUND == render_policy("example.com", parse_policy(body), TLSRPT_STRICT)


def test_testing_enforced_by_profile_carries_the_attributes() -> None:
    """A profile that enforces ``testing`` answers it like ``enforce``, attributes included."""
    body = RFC_EXAMPLE_BODY.replace(b"mode: enforce", b"mode: testing")
    level, attributes = parse_postfix_policy(
        render_policy("example.com", parse_policy(body), TLSRPT_STRICT).text
    )
    assert "secure" == level
    assert ["sts"] == values(attributes, "policy_type")
    assert policy_lines(body) == values(attributes, "policy_string")
