"""MTA-STS policy body parsing, RFC 8461 section 3.2 (checklist section 3, #49-#83),
and the policy media type (#44-#46).
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.sts_policy import (
    MAX_AGE_LIMIT,
    MAX_POLICY_BYTES,
    Mode,
    StsPolicy,
    is_policy_media_type,
    parse_policy,
)
from postfix_sts.errors import PolicySyntaxError


def body(*lines: str, term: str = "\n") -> bytes:
    """A policy body: ``lines`` joined by ``term``, UTF-8 encoded."""
    return term.join(lines).encode()


def enforce(*extra: str, mx: str = "mail.example.com", max_age: str = "86400") -> bytes:
    """A valid enforce policy with ``extra`` lines appended."""
    return body("version: STSv1", "mode: enforce", f"mx: {mx}", f"max_age: {max_age}", *extra)


def invalid(data: bytes) -> PolicySyntaxError:
    """The PolicySyntaxError that parsing ``data`` must raise."""
    with pytest.raises(PolicySyntaxError) as excinfo:
        parse_policy(data)
    return excinfo.value


RFC_EXAMPLE = body(
    "version: STSv1",
    "mode: enforce",
    "mx: mail.example.com",
    "mx: *.example.net",
    "mx: backupmx.example.com",
    "max_age: 604800",
)

RFC_EXAMPLE_FIELDS = (
    Mode.ENFORCE,
    604800,
    ("mail.example.com", "*.example.net", "backupmx.example.com"),
)


def fields(policy: StsPolicy) -> tuple[Mode, int, tuple[str, ...]]:
    """The parsed content of a policy, without its text."""
    return (policy.mode, policy.max_age, policy.mx)


# --- valid policies ---------------------------------------------------------------------


def test_rfc_example_policy_is_valid() -> None:
    """#49: RFC 8461 section 3.2 example."""
    expected = StsPolicy(
        mode=Mode.ENFORCE,
        max_age=604800,
        mx=("mail.example.com", "*.example.net", "backupmx.example.com"),
        text=RFC_EXAMPLE.decode(),
    )
    assert expected == parse_policy(RFC_EXAMPLE)


def test_appendix_a_testing_policy_is_valid() -> None:
    """#50: RFC 8461 Appendix A example."""
    policy = parse_policy(
        body(
            "version: STSv1",
            "mode: testing",
            "mx: mx1.example.com",
            "mx: mx2.example.com",
            "mx: mx.backup-example.com",
            "max_age: 1296000",
        )
    )
    assert (Mode.TESTING, 1296000) == (policy.mode, policy.max_age)
    assert ("mx1.example.com", "mx2.example.com", "mx.backup-example.com") == policy.mx


@pytest.mark.parametrize(
    "data",
    [
        RFC_EXAMPLE,
        RFC_EXAMPLE + b"\n",
        RFC_EXAMPLE.replace(b"\n", b"\r\n"),
        RFC_EXAMPLE.replace(b"\n", b"\r\n") + b"\r\n",
    ],
    ids=["lf", "lf-final", "crlf", "crlf-final"],
)
def test_lf_and_crlf_line_endings_are_valid(data: bytes) -> None:
    """#51: ``sts-policy-term = LF / CRLF`` (erratum 6253)."""
    assert RFC_EXAMPLE_FIELDS == fields(parse_policy(data))


def test_mixed_line_endings_are_valid() -> None:
    """#51: the checklist's mixed example."""
    policy = parse_policy(b"version:STSv1\r\nmode:\tenforce\r\nmx: *.example.com\nmax_age: 1")
    assert (Mode.ENFORCE, 1, ("*.example.com",)) == fields(policy)


def test_bare_cr_line_endings_are_invalid() -> None:
    """#52: CR alone is not a line terminator."""
    invalid(RFC_EXAMPLE.replace(b"\n", b"\r"))


def test_fields_may_come_in_any_order() -> None:
    """#53: unlike the TXT record, ``version`` need not come first."""
    policy = parse_policy(body("mode: enforce", "mx: a.example", "version: STSv1", "max_age: 1"))
    assert (Mode.ENFORCE, 1, ("a.example",)) == fields(policy)


def test_whitespace_after_colon_is_valid() -> None:
    """#54: ``sts-policy-field-delim = ":" *WSP``."""
    policy = parse_policy(
        body("version:STSv1", "mode:\tenforce", "mx:  \t\t *.example.com", "max_age:1")
    )
    assert (Mode.ENFORCE, 1, ("*.example.com",)) == fields(policy)


def test_trailing_whitespace_is_valid() -> None:
    """#55: ``sts-policy-field *WSP``."""
    policy = parse_policy(
        body("version: STSv1 ", "mode: enforce\t", "mx: a.example \t", "max_age: 0 ")
    )
    assert (Mode.ENFORCE, 0, ("a.example",)) == fields(policy)


@pytest.mark.parametrize("tail", [b"\n\n", b"\n\n\n", b"\r\n\r\n", b"\n\r\n\n"])
def test_trailing_empty_lines_are_tolerated(tail: bytes) -> None:
    """sts_policy.py docstring: empty lines after the last field are tolerated."""
    assert RFC_EXAMPLE_FIELDS == fields(parse_policy(RFC_EXAMPLE + tail))


def test_mode_none_without_mx_is_valid() -> None:
    """#64: mx is required "except when mode is none"."""
    policy = parse_policy(body("version: STSv1", "mode: none", "max_age: 86400"))
    assert (Mode.NONE, 86400, ()) == fields(policy)


def test_mode_none_with_mx_is_valid() -> None:
    """#65."""
    policy = parse_policy(body("version: STSv1", "mode: none", "mx: a.example", "max_age: 86400"))
    assert (Mode.NONE, ("a.example",)) == (policy.mode, policy.mx)


@pytest.mark.parametrize(
    ("value", "max_age"),
    [
        ("0", 0),  # #66: non-negative; expires at once
        ("1", 1),
        ("31557600", 31557600),  # #67: the maximum
        ("0086400", 86400),  # #71: leading zeros
        ("0000000000", 0),  # 10 digits
        ("31557601", MAX_AGE_LIMIT),  # #68 [AMBIG]: capped (erratum 7282, docstring)
        ("9999999999", MAX_AGE_LIMIT),  # #68: the largest 10-digit value is capped too
    ],
)
def test_max_age_values(value: str, max_age: int) -> None:
    """#66-#68, #71: ``max_age`` is 1-10 digits, capped at 31557600."""
    assert max_age == parse_policy(enforce(max_age=value)).max_age


def test_max_age_limit_is_one_year() -> None:
    """#67: RFC 8461 section 3.2 "up to 31557600"."""
    assert 31_557_600 == MAX_AGE_LIMIT


def test_first_mode_wins() -> None:
    """#72 [SHALL]: later occurrences of a single-valued key are ignored."""
    policy = parse_policy(enforce("mode: none"))
    assert Mode.ENFORCE == policy.mode


def test_first_max_age_wins() -> None:
    """#72."""
    assert 86400 == parse_policy(enforce("max_age: 1")).max_age


def test_first_version_wins_over_a_junk_repeat() -> None:
    """#73: ``version: STSv2`` after ``version: STSv1`` is ignored."""
    assert Mode.ENFORCE == parse_policy(enforce("version: STSv2")).mode


def test_invalid_later_duplicate_of_mode_is_ignored() -> None:
    """#72: the ignored duplicate need not be a valid value."""
    assert Mode.ENFORCE == parse_policy(enforce("mode: doubt")).mode


@pytest.mark.parametrize(
    ("mx", "pattern"),
    [
        ("*.example.com", "*.example.com"),  # #74
        ("*.com", "*.com"),  # #102
        ("mail.example.com.", "mail.example.com"),  # #76 [AMBIG]: trailing dot dropped
        ("*.example.com.", "*.example.com"),
        ("MAIL.Example.COM", "mail.example.com"),  # case is not significant
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # A-label
        ("a-b.example", "a-b.example"),
        ("1mx.example", "1mx.example"),
    ],
)
def test_mx_pattern_is_accepted_and_normalised(mx: str, pattern: str) -> None:
    """#74, #76: ``mx = ["*."] Domain``, kept as lower-case A-labels."""
    assert (pattern,) == parse_policy(enforce(mx=mx)).mx


def test_mx_patterns_keep_first_seen_order_without_repeats() -> None:
    """sts_policy.py: ``mx`` in first-seen order, no repeats (after normalisation)."""
    policy = parse_policy(
        enforce(
            "mx: b.example", "mx: A.example", "mx: a.example.", "mx: *.b.example", mx="a.example"
        )
    )
    assert ("a.example", "b.example", "*.b.example") == policy.mx


def test_longest_mx_label_is_accepted() -> None:
    """RFC 1035: a 63-octet label is valid in an mx."""
    mx = "a" * 63 + ".example"
    assert (mx,) == parse_policy(enforce(mx=mx)).mx


@pytest.mark.parametrize(
    "data",
    [
        body("foo: bar"),
        body("x-report: safe-value"),
        body("comment: café au lait"),  # UTF-8 value
        body("Version: STSv2"),  # an unknown key: keys are case-sensitive
        body("MX: not a domain"),
        body("note: a  b  c"),  # inner spaces are allowed in a value
        body("ext.1_a-b: !~"),
        body("e" * 32 + ": x"),  # 32-character name
        body("a:b"),
        body("key: value: with colon"),
    ],
)
def test_unknown_keys_are_ignored(data: bytes) -> None:
    """#80 [MUST accept, SHALL ignore]: extension fields do not change the policy."""
    policy = parse_policy(enforce() + b"\n" + data)
    assert (Mode.ENFORCE, 86400, ("mail.example.com",)) == fields(policy)


def test_policy_of_exactly_64_kib_is_accepted() -> None:
    """#42: 65 536 bytes is within the limit (inclusive)."""
    head = enforce() + b"\npad: "
    data = head + b"x" * (MAX_POLICY_BYTES - len(head))
    assert 65_536 == len(data)
    assert Mode.ENFORCE == parse_policy(data).mode


# --- invalid policies -------------------------------------------------------------------


def test_space_before_colon_is_invalid() -> None:
    """#56."""
    invalid(body("version : STSv1", "mode: enforce", "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize("indent", [" ", "  ", "\t"])
def test_leading_indentation_is_invalid(indent: str) -> None:
    """#57 [AMBIG]: invalid per the ABNF (the module follows the ABNF)."""
    invalid(body(f"{indent}version: STSv1", "mode: enforce", "mx: a.example", "max_age: 1"))


def test_indented_later_line_is_invalid() -> None:
    """#57."""
    invalid(body("version: STSv1", "  mode: enforce", "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize("blank", ["", " ", "\t", "\r"])
def test_blank_line_between_fields_is_invalid(blank: str) -> None:
    """#58 [AMBIG]: sts_policy.py docstring: a blank line between fields is invalid."""
    invalid(body("version: STSv1", blank, "mode: enforce", "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize(
    "data",
    [
        body("Version: STSv1", "mode: enforce", "mx: a.example", "max_age: 1"),
        body("version: stsv1", "mode: enforce", "mx: a.example", "max_age: 1"),
        body("version: STSv1", "mode: Enforce", "mx: a.example", "max_age: 1"),
        body("version: STSv1", "Mode: enforce", "mx: a.example", "max_age: 1"),
        body("version: STSv1", "mode: enforce", "mx: a.example", "Max_Age: 1"),
        body("version: STSv1", "mode: ENFORCE", "mx: a.example", "max_age: 1"),
    ],
)
def test_keys_and_values_are_case_sensitive(data: bytes) -> None:
    """#59: ``%s`` literals; ``Version`` is an unknown key, so version is missing."""
    invalid(data)


@pytest.mark.parametrize("version", ["STSv0", "STSv2", "STSv10", "STSv99", "STSv1.0", "STSv1 x"])
def test_wrong_version_is_invalid(version: str) -> None:
    """#60."""
    invalid(body(f"version: {version}", "mode: enforce", "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize(
    "data",
    [
        body("mode: enforce", "mx: a.example", "max_age: 1"),  # no version
        body("version: STSv1", "mx: a.example", "max_age: 1"),  # no mode
        body("version: STSv1", "mode: enforce", "mx: a.example"),  # no max_age
        body("version: STSv1", "mode: none"),  # none still needs max_age
    ],
    ids=["version", "mode", "max_age", "none-max_age"],
)
def test_missing_required_field_is_invalid(data: bytes) -> None:
    """#61."""
    invalid(data)


@pytest.mark.parametrize("mode", ["doubt", "bad", "invalid", "enforce testing", "enforced"])
def test_bad_mode_is_invalid(mode: str) -> None:
    """#62."""
    invalid(body("version: STSv1", f"mode: {mode}", "mx: a.example", "max_age: 1"))


@pytest.mark.parametrize("mode", ["enforce", "testing"])
def test_enforce_or_testing_without_mx_is_invalid(mode: str) -> None:
    """#63: mx is "required at least once, except when mode is none"."""
    invalid(body("version: STSv1", f"mode: {mode}", "max_age: 86400"))


@pytest.mark.parametrize("value", ["01234567890", "12345678901"])
def test_max_age_of_11_digits_is_invalid(value: str) -> None:
    """#69: ``1*10(DIGIT)``."""
    invalid(enforce(max_age=value))


@pytest.mark.parametrize("value", ["xxx", "-1", "+5", "1.5", "86400s", "", "1 2", "0x10", "١٢"])
def test_non_numeric_max_age_is_invalid(value: str) -> None:
    """#70: only ASCII digits (the last case is Arabic-Indic digits)."""
    invalid(enforce(max_age=value))


@pytest.mark.parametrize(
    "mx",
    [
        "*.*.example",
        "**.example",
        "*example.com",
        "mail*.example.com",
        "test.example-",
        "-test.example",
        "",
        "*",
        "*.",
        "a..example",
        "a_b.example",
        "*.example.com..",
        "a" * 64 + ".example",  # label over 63 octets
    ],
)
def test_invalid_mx_pattern_makes_policy_invalid(mx: str) -> None:
    """#74: ``["*."] Domain`` (RFC 5321 section 4.1.2)."""
    invalid(enforce(mx=mx))


def test_overlong_mx_name_makes_policy_invalid() -> None:
    """RFC 1035 section 2.3.4: a name over 253 characters is not a domain."""
    mx = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
    invalid(enforce(mx=mx))


@pytest.mark.parametrize("mx", ["møx.example", "bücher.example", "*.bücher.example"])
def test_u_label_mx_makes_policy_invalid(mx: str) -> None:
    """#75: the mx value MUST be the Punycode A-label."""
    invalid(enforce(mx=mx))


@pytest.mark.parametrize(
    "mx", ["192.0.2.1", "*.1.2.3.4", "192.0.2.1.", "[192.0.2.1]", "2001:db8::1"]
)
def test_ip_literal_mx_makes_policy_invalid(mx: str) -> None:
    """#77 [IMPL]: sts_policy.py docstring: an mx that is an IP address is invalid."""
    invalid(enforce(mx=mx))


@pytest.mark.parametrize(
    "mx", ["a.example, b.example", "a.example b.example", "a.example;b.example"]
)
def test_several_mx_on_one_line_is_invalid(mx: str) -> None:
    """#78: "each MX key/value pair MUST be on its own line"."""
    invalid(enforce(mx=mx))


def test_mx_with_missing_star_makes_policy_invalid() -> None:
    """#79 [AMBIG]: ``.aa.b.cc.com`` is syntactically invalid; the whole policy is rejected."""
    invalid(enforce("mx: .aa.b.cc.com"))


@pytest.mark.parametrize(
    "line",
    [
        "_bad: x",
        "bad name: x",
        "e" * 33 + ": x",  # 33-character name
        ".ext: x",
        "-ext: x",
        "ext:",  # empty value
        "ext: ",
        "ext:\t",
        "ext: a\tb",
        "ext: a\x00b",
        "ext: a\x7fb",
        "ext: a\rb",
        "ext: a\x00",
        "ext: \x0bvalue",
        ": value",
        "no colon here",
    ],
)
def test_bad_extension_name_or_value_is_invalid(line: str) -> None:
    """#81: ``sts-policy-ext-name`` / ``sts-policy-ext-value`` ABNF."""
    invalid(enforce(line))


def test_non_utf8_byte_is_invalid() -> None:
    """#81: byte ``\\xff`` is not UTF-8."""
    invalid(enforce() + b"\next: a\xffb")


@pytest.mark.parametrize("data", [b"garbage", b"", b"\n", b"\r\n", b"<html>hello</html>\n"])
def test_garbage_or_empty_body_is_invalid(data: bytes) -> None:
    """#82."""
    invalid(data)


def test_utf8_bom_makes_policy_invalid() -> None:
    """#83 [IMPL]: strictly invalid; the first key is not ``version``."""
    invalid(b"\xef\xbb\xbf" + RFC_EXAMPLE)


def test_policy_over_64_kib_is_invalid() -> None:
    """#42: 64 KiB + 1 byte is rejected."""
    head = enforce() + b"\npad: "
    data = head + b"x" * (MAX_POLICY_BYTES + 1 - len(head))
    assert 65_537 == len(data)
    invalid(data)


def test_policy_error_has_the_invalid_policy_reason() -> None:
    """errors.py: the reason label of a syntax error."""
    assert "invalid-policy" == invalid(b"garbage").reason


# --- media type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "TEXT/PLAIN",
        "text/plain;charset=UTF-8",
        "text/plain ; charset=UTF-8",
        "TEXT/PLAIN; charset=US-ASCII; x-extra=ignored",
        "Text/Plain",
    ],
)
def test_text_plain_media_type_is_accepted(content_type: str) -> None:
    """#44: text/plain, case-insensitive, with any parameters."""
    assert is_policy_media_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "application/octet-stream",
        "application/json+text/plain",
        "text/plain+",
        None,
        "",
        "not a media type",
        "text/plainx",
        "text/plain/x",
        "text",
    ],
)
def test_other_media_types_are_rejected(content_type: str | None) -> None:
    """#45 [SHOULD]: anything but text/plain (or no header) is a fetch failure."""
    assert not is_policy_media_type(content_type)


@pytest.mark.parametrize(
    "content_type", ["text/plain; charset=iso-8859-1", "text/plain; charset=x"]
)
def test_charset_parameter_is_ignored(content_type: str) -> None:
    """#46 [AMBIG]: sts_policy.py docstring: parameters such as charset are ignored."""
    assert is_policy_media_type(content_type)


# --- properties -------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_any_bytes_give_a_policy_or_policy_syntax_error(data: bytes) -> None:
    """errors.py: parse_policy raises nothing but PolicySyntaxError."""
    try:
        result = parse_policy(data)
    except PolicySyntaxError:
        return
    assert isinstance(result, StsPolicy)


policy_lines = st.one_of(
    st.sampled_from(
        [
            "version: STSv1",
            "version: STSv2",
            "mode: enforce",
            "mode: testing",
            "mode: none",
            "mode: x",
            "max_age: 86400",
            "max_age: 99999999999",
            "max_age: -1",
            "mx: mail.example.com",
            "mx: *.example.net",
            "mx: 1.2.3.4",
            "mx: bad_mx",
            "mx: MAIL.example.com.",
            "ext: café",
            "",
            " ",
            "\r",
        ]
    ),
    st.text(max_size=30),
)


@given(st.lists(policy_lines, max_size=10), st.sampled_from(["\n", "\r\n"]))
def test_any_line_mix_gives_a_valid_policy_or_policy_syntax_error(
    lines: list[str], term: str
) -> None:
    """errors.py; and a returned policy respects the documented invariants (section 3.2)."""
    try:
        policy = parse_policy(body(*lines, term=term))
    except PolicySyntaxError:
        return
    assert 0 <= policy.max_age <= MAX_AGE_LIMIT
    assert policy.mode is Mode.NONE or policy.mx
    assert len(set(policy.mx)) == len(policy.mx)
    assert all(p == p.lower() and p.isascii() and not p.endswith(".") for p in policy.mx)
