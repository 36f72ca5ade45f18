"""From a Postfix policy-map key to a policy domain, and socketmap request parsing.

RFC 8461 section 3.4 (policy domain), checklist #29, #111-#113, #120-#122, #186, #209.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.answer import (
    NOTFOUND,
    Answer,
    Status,
    parse_socketmap_request,
)
from postfix_sts.core.query import NotADomain, normalize_key


def domain_of(key: str) -> str:
    """The policy domain for ``key``, failing the test if there is none."""
    result = normalize_key(key)
    assert isinstance(result, str), f"{key!r} -> {result!r}"
    return result


def is_not_a_domain(key: str) -> bool:
    return isinstance(normalize_key(key), NotADomain)


# --- valid keys -------------------------------------------------------------------------


def test_plain_domain_is_its_own_policy_domain() -> None:
    """RFC 8461 section 3.4: the next-hop domain is the policy domain."""
    assert "example.com" == domain_of("example.com")


def test_subdomain_is_not_reduced_to_its_parent() -> None:
    """#28: ``mail.example.com`` is its own policy domain, never ``example.com``."""
    assert "mail.example.com" == domain_of("mail.example.com")


@pytest.mark.parametrize("key", ["Example.COM", "EXAMPLE.COM", "eXaMpLe.CoM"])
def test_key_case_is_folded(key: str) -> None:
    """#113, #122: Postfix does not fold socketmap keys; ``Example.COM`` is ``example.com``."""
    assert "example.com" == domain_of(key)


@pytest.mark.parametrize("key", ["good.loc.", "Good.LOC.", "Good.LOC"])
def test_trailing_dot_and_case_give_the_same_domain(key: str) -> None:
    """#113: ``good.loc.`` and ``Good.LOC`` get the same answer as ``good.loc``."""
    assert "good.loc" == domain_of(key)


@pytest.mark.parametrize(
    ("key", "alabel"),
    [
        ("faß.de", "xn--fa-hia.de"),  # #209: IDNA 2008, not IDNA 2003's fass.de
        ("Faß.DE", "xn--fa-hia.de"),
        ("faß.de.", "xn--fa-hia.de"),
        ("bücher.example", "xn--bcher-kva.example"),  # #208
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("x.ñaca.com", "x.xn--aca-6ma.com"),  # #104
        ("mail.bücher.example", "mail.xn--bcher-kva.example"),
    ],
)
def test_u_label_key_is_converted_to_a_label(key: str, alabel: str) -> None:
    """#209: U-labels become A-labels by IDNA 2008 / UTS #46."""
    assert alabel == domain_of(key)


@pytest.mark.parametrize(
    ("key", "alabel"),
    [
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example"),
        ("xn--fa-hia.de.", "xn--fa-hia.de"),
    ],
)
def test_a_label_key_is_kept_in_lower_case(key: str, alabel: str) -> None:
    """#208: an A-label key is already the policy domain; only case and the dot change."""
    assert alabel == domain_of(key)


def test_longest_valid_label_is_accepted() -> None:
    """RFC 1035 section 2.3.4: a label is at most 63 octets."""
    key = "a" * 63 + ".example"
    assert key == domain_of(key)


def test_longest_valid_name_is_accepted() -> None:
    """RFC 1035 section 2.3.4: a name (without the root dot) is at most 253 characters."""
    key = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert 253 == len(key)
    assert key == domain_of(key)
    assert key == domain_of(key + ".")


@pytest.mark.parametrize("key", ["a-b.example", "1a.example", "123.example.com", "x.y.z.example"])
def test_ldh_names_are_accepted(key: str) -> None:
    """RFC 5321 section 4.1.2: Let-dig [Ldh-str] labels; digits may start a label."""
    assert key == domain_of(key)


# --- keys with no policy domain ---------------------------------------------------------


@pytest.mark.parametrize("key", [".example.com", ".com", ".Example.COM", "."])
def test_parent_domain_probe_has_no_policy_domain(key: str) -> None:
    """#29, #120: Postfix probes ``.example.com`` after a NOTFOUND; answer NF, no lookup."""
    assert is_not_a_domain(key)


@pytest.mark.parametrize(
    "key",
    [
        "[192.0.2.1]",
        "[192.0.2.1]:25",
        "[a:bb:ccc::dddd]:123",
        "[IPv6:2001:db8::1]",
    ],
)
def test_address_literal_has_no_policy_domain(key: str) -> None:
    """#111: no MTA-STS for address literals."""
    assert is_not_a_domain(key)


@pytest.mark.parametrize("key", ["[good.loc]", "[good.loc]:123", "good.loc:123", "good.loc:"])
def test_bracketed_or_ported_next_hop_has_no_policy_domain(key: str) -> None:
    """#112 [AMBIG], #121: query.py docstring chooses NF for ``[host]`` and ``host:port``."""
    assert is_not_a_domain(key)


@pytest.mark.parametrize("key", ["192.0.2.1", "1.2.3.4", "192.0.2.1.", "2001:db8::1", "::1"])
def test_bare_ip_address_is_not_a_domain(key: str) -> None:
    """#111: an IP address is not a policy domain even without brackets."""
    assert is_not_a_domain(key)


def test_all_numeric_top_label_is_not_a_domain() -> None:
    """A name whose last label is all digits is an IP address form, not a domain."""
    assert is_not_a_domain("example.123")


@pytest.mark.parametrize("key", ["localhost", "com", "LOCALHOST.", "ü"])
def test_single_label_has_no_policy_domain(key: str) -> None:
    """RFC 8461 section 3.4: only multi-label domains are policy domains."""
    assert is_not_a_domain(key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "a..b.test",  # empty label (crashed the peer's resolver, style-exemplars.md)
        "example.com..",
        "-a.example",
        "a-.example",
        "a_b.example",
        "_mta-sts.example.com",
        "exa mple.com",
        "example.com ",
        " example.com",
        "example.com\n",
        "a\x00.example",
        "a/b.example",
        "*.example.com",
        "ü..example",
        "faß.de..",
    ],
)
def test_invalid_name_has_no_policy_domain(key: str) -> None:
    """RFC 5321 section 4.1.2: a key that is not a valid host name gets NF at once."""
    assert is_not_a_domain(key)


def test_overlong_label_is_rejected() -> None:
    """RFC 1035 section 2.3.4: 64-octet label."""
    assert is_not_a_domain("a" * 64 + ".example")


def test_overlong_u_label_is_rejected() -> None:
    """An internationalized label whose A-label exceeds 63 octets."""
    assert is_not_a_domain("ü" + "a" * 62 + ".example")


def test_overlong_name_is_rejected() -> None:
    """RFC 1035 section 2.3.4: 254 characters without the root dot."""
    key = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])
    assert 254 == len(key)
    assert is_not_a_domain(key)


@pytest.mark.parametrize(
    "key",
    [
        "xn--zz.example",  # not Punycode
        "xn--.example",
        "xn--abc-.example",
        "☃.example",  # DISALLOWED in IDNA 2008 (allowed in IDNA 2003)
        "💩.la",
        "\u200d.example",  # ZWJ without context
    ],
)
def test_invalid_idna_has_no_policy_domain(key: str) -> None:
    """#209: labels that are not valid IDNA 2008 are not policy domains."""
    assert is_not_a_domain(key)


def test_not_a_domain_says_why() -> None:
    """query.py: the reason is for the debug log, so it must not be empty."""
    result = normalize_key(".example.com")
    assert isinstance(result, NotADomain)
    assert result.reason


# --- properties -------------------------------------------------------------------------

_LDH = "abcdefghijklmnopqrstuvwxyz0123456789"
labels = st.text(_LDH + "-", min_size=1, max_size=63).filter(
    lambda s: s[0] != "-" and s[-1] != "-" and "--" not in s
)
top_labels = labels.filter(lambda s: not s.isdigit())
normalized_domains = st.builds(
    lambda head, top: ".".join([*head, top]),
    st.lists(labels, min_size=1, max_size=4),
    top_labels,
).filter(lambda d: len(d) <= 253)


@given(normalized_domains)
def test_normalized_domain_is_a_fixed_point(domain: str) -> None:
    """#113: normalizing an already-normalized domain returns it unchanged."""
    assert domain == normalize_key(domain)


@given(normalized_domains)
def test_upper_case_and_trailing_dot_normalize_to_the_same_domain(domain: str) -> None:
    """#113, #122."""
    assert domain == normalize_key(domain.upper() + ".")


key_alphabet = st.sampled_from(
    [*"aZß.-0ü9İ_:[]", "xn--", "ñ", "\u3002", "\u200d", "\u0301", "ﬀ", "é"]
)
keys = st.one_of(st.text(max_size=80), st.lists(key_alphabet, max_size=30).map("".join))


@given(keys)
def test_normalize_is_idempotent_and_never_raises(key: str) -> None:
    """Any key gives a domain or NotADomain (errors.py), and a domain normalizes to itself."""
    result = normalize_key(key)
    assert isinstance(result, str | NotADomain)
    if isinstance(result, str):
        assert result == normalize_key(result)
        assert result.isascii()
        assert result == result.lower()


# --- socketmap requests -----------------------------------------------------------------


def test_request_is_split_into_map_name_and_key() -> None:
    """#175: a request is ``<name> SP <key>``."""
    assert ("postfix", "good.loc") == parse_socketmap_request(b"postfix good.loc")


def test_request_key_keeps_everything_after_the_first_space() -> None:
    """socketmap_table(5): the name ends at the first space; the rest is the key."""
    assert ("postfix", "a b c") == parse_socketmap_request(b"postfix a b c")


def test_request_key_keeps_brackets_and_port() -> None:
    """#121: the full next hop incl. ``[]`` and port reaches the key, verbatim."""
    expected = ("postfix", "[mail.example.com]:587")
    assert expected == parse_socketmap_request(b"postfix [mail.example.com]:587")


def test_utf8_key_is_decoded() -> None:
    """#208/#209: a U-label key arrives as UTF-8."""
    expected = ("postfix", "faß.de")
    assert expected == parse_socketmap_request("postfix faß.de".encode())


def test_empty_key_gets_perm() -> None:
    """#186 [IMPL]: ``5:name ,`` is a request without a key.

    docs/rfc-decisions.md (#186) and the parse_socketmap_request docstring: a request
    without a key gets ``PERM malformed socketmap request``.
    """
    result = parse_socketmap_request(b"name ")
    assert isinstance(result, Answer)
    assert Status.PERM == result.status


@pytest.mark.parametrize("payload", [b"name", b"", b" example.com"])
def test_request_without_name_or_key_gets_perm(payload: bytes) -> None:
    """#186 [IMPL]: ``4:name,`` or no map name: PERM answer (answer.py docstring)."""
    result = parse_socketmap_request(payload)
    assert isinstance(result, Answer)
    assert Status.PERM == result.status


def test_non_utf8_key_gets_notfound() -> None:
    """answer.py: a key that is not UTF-8 cannot be a domain name -> NOTFOUND."""
    assert NOTFOUND == parse_socketmap_request(b"postfix \xff\xfe.example")


@given(st.binary(max_size=100))
def test_any_request_payload_gives_a_request_or_an_answer(payload: bytes) -> None:
    """errors.py: no exception escapes a core function; each request gets a reply."""
    result = parse_socketmap_request(payload)
    assert isinstance(result, tuple | Answer)
