"""Postfix's tcp_table protocol, sans I/O (tcp_table(5); checklist section 11, #192-#199).

Requests are ``get SP <%XX-encoded key> LF`` (#196); replies are three digits, a
space, a ``%XX``-encoded value and a newline (#193, #197), at most 4096 bytes
including the newline (#198).  The reply checks below parse lines the way
Postfix's ``dict_tcp_lookup`` and ``hex_unquote`` do.
"""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.answer import NOTFOUND, Answer, Status, perm, temp
from postfix_sts.core.tcp_table import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    TcpTableDecoder,
    encode_reply,
    parse_request,
)
from postfix_sts.errors import FramingError

SECURE = "secure match=mail.example.com servername=hostname"

_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def postfix_unquote(value: bytes) -> bytes:
    """Postfix ``hex_unquote``: every ``%`` must start a two-digit hex escape."""
    if b"%" in _ESCAPE.sub(b"", value):
        raise ValueError(f"raw % not followed by two hex digits in {value[:80]!r}")
    return _ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), value)


def postfix_read_reply(line: bytes) -> tuple[int, bytes]:
    """What Postfix's tcp_table client makes of one reply line (#193, #195, #198)."""
    if len(line) > MAX_REPLY_BYTES:
        raise ValueError(f"reply of {len(line)} bytes exceeds {MAX_REPLY_BYTES}")
    if not line.endswith(b"\n") or line.count(b"\n") != 1:
        raise ValueError("a reply is exactly one newline-terminated line")
    text = line[:-1]
    if len(text) < 4 or not text[:3].isdigit() or text[3:4] != b" ":
        raise ValueError(f"malformed reply {text[:20]!r}: need three digits then a space")
    return int(text[0:1]), postfix_unquote(text[4:])


def decode_all(*chunks: bytes) -> list[bytes]:
    """Feed ``chunks`` one by one and collect every complete request line."""
    decoder = TcpTableDecoder()
    lines: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (line := decoder.next_line()) is not None:
            lines.append(line)
    return lines


# --- request framing ----------------------------------------------------------------------


def test_incomplete_line_yields_nothing_until_its_newline_arrives() -> None:
    """tcp_table(5): a request is one newline-terminated line."""
    decoder = TcpTableDecoder()
    decoder.feed(b"get example.com")
    assert None is decoder.next_line()
    decoder.feed(b"\n")
    assert b"get example.com" == decoder.next_line()
    assert None is decoder.next_line()


def test_line_fragmented_byte_by_byte_is_reassembled() -> None:
    """A request split over many TCP segments decodes as one line."""
    request = b"get b%C3%BCcher.example\n"
    assert [b"get b%C3%BCcher.example"] == decode_all(
        *(request[i : i + 1] for i in range(len(request)))
    )


def test_several_pipelined_requests_in_one_chunk_decode_in_order() -> None:
    """#199: the connection is reused; requests may arrive back to back."""
    assert [b"get a.example", b"get b.example", b"get c.example"] == decode_all(
        b"get a.example\nget b.example\nget c.ex", b"ample\n"
    )


def test_crlf_line_ending_is_tolerated() -> None:
    """A CR before the LF is not part of the key."""
    assert [b"get example.com", b"get example.net"] == decode_all(
        b"get example.com\r\nget example.net\r", b"\n"
    )


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=10))
def test_decoding_does_not_depend_on_how_input_is_fragmented(cuts: list[int]) -> None:
    """Any split of the byte stream gives the same request lines."""
    stream = b"get example.com\r\nget b%c3%bccher.example\nget [mail.example.com]:587\n"
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert [
        b"get example.com",
        b"get b%c3%bccher.example",
        b"get [mail.example.com]:587",
    ] == decode_all(*chunks)


def test_line_of_exactly_the_limit_is_accepted() -> None:
    """The request-line bound is inclusive: ``MAX_REQUEST_BYTES`` bytes are accepted."""
    line = b"get " + b"a" * (MAX_REQUEST_BYTES - 4)
    assert [line] == decode_all(line, b"\n")


def test_over_long_line_without_newline_is_a_framing_error() -> None:
    """A peer that never ends its line cannot make the daemon buffer without bound."""
    decoder = TcpTableDecoder()
    decoder.feed(b"get " + b"a" * MAX_REQUEST_BYTES)
    with pytest.raises(FramingError) as raised:
        decoder.next_line()
    assert "too-long" == raised.value.reason


def test_over_long_line_fragmented_is_a_framing_error() -> None:
    """The limit holds when the long line arrives in many small pieces."""
    decoder = TcpTableDecoder()
    with pytest.raises(FramingError):  # noqa: PT012 - the error comes on some later chunk
        for _ in range(MAX_REQUEST_BYTES // 100 + 2):
            decoder.feed(b"a" * 100)
            decoder.next_line()


def test_over_long_line_is_a_framing_error_even_when_its_newline_arrives_with_it() -> None:
    """The limit is on the line, not on how TCP happened to segment it.

    A line longer than ``MAX_REQUEST_BYTES`` that arrives in one read together
    with its newline must be refused like the same line arriving in pieces.
    """
    decoder = TcpTableDecoder()
    decoder.feed(b"get " + b"a" * (2 * MAX_REQUEST_BYTES) + b"\n")
    with pytest.raises(FramingError):
        decoder.next_line()


# --- request parsing ----------------------------------------------------------------------


def test_plain_key_is_returned_verbatim() -> None:
    """#192: ``get example.com``."""
    assert "example.com" == parse_request(b"get example.com")


def test_key_with_brackets_and_port_is_returned_verbatim() -> None:
    """#196: ``[mail.example.com]:587`` is sent without encoding."""
    assert "[mail.example.com]:587" == parse_request(b"get [mail.example.com]:587")


@pytest.mark.parametrize(
    "line", [b"get b%C3%BCcher.example", b"get b%c3%bccher.example", b"get b%C3%bccher.example"]
)
def test_utf8_key_is_hex_decoded_in_any_case(line: bytes) -> None:
    """#196: UTF-8 ``bücher.example`` is sent as ``b%C3%BCcher.example``; hex in any case."""
    assert "bücher.example" == parse_request(line)


def test_percent_25_decodes_to_a_percent_sign() -> None:
    """#196: a key containing ``%`` is sent as ``%25``."""
    assert "50%off.example" == parse_request(b"get 50%25off.example")


def test_decoding_is_a_single_pass() -> None:
    """``%2541`` is ``%`` followed by ``41``, not ``A``: decoded text is not decoded again."""
    assert "%41.example" == parse_request(b"get %2541.example")


def test_encoded_whitespace_is_decoded() -> None:
    """#196: Postfix encodes whitespace in keys."""
    assert "a b\tc" == parse_request(b"get a%20b%09c")


def test_key_that_is_not_utf8_is_not_found() -> None:
    """A key that does not decode to UTF-8 cannot name a domain."""
    assert NOTFOUND == parse_request(b"get %FF%FE.example")


@pytest.mark.parametrize("line", [b"put example.com value", b"GET example.com", b"", b"example"])
def test_request_other_than_get_gets_a_temporary_error(line: bytes) -> None:
    """tcp_table(5) defines only ``get``; anything else is answered 400 (#194)."""
    answer = parse_request(line)
    assert isinstance(answer, Answer)
    assert Status.TEMP == answer.status
    assert encode_reply(answer).startswith(b"400 ")


@pytest.mark.parametrize("line", [b"get", b"get "])
def test_get_without_key_gets_a_permanent_error(line: bytes) -> None:
    """A ``get`` without a key is a broken client: PERM (sent as 400, #194)."""
    answer = parse_request(line)
    assert isinstance(answer, Answer)
    assert Status.PERM == answer.status
    assert encode_reply(answer).startswith(b"400 ")


@given(st.text(min_size=1).filter(lambda s: s != " "))
def test_any_key_postfix_encodes_decodes_back(key: str) -> None:
    """#196: what Postfix's ``hex_quote`` sends decodes to the original key."""

    def hex_quote(raw: bytes) -> bytes:
        return b"".join(
            b"%%%02X" % b if b == 0x25 or b <= 0x20 or b >= 0x7F else bytes([b]) for b in raw
        )

    assert key == parse_request(b"get " + hex_quote(key.encode()))


# --- replies ------------------------------------------------------------------------------


def test_found_reply_is_200_space_value_newline() -> None:
    """#192: ``200 secure match=mail.example.com servername=hostname``."""
    assert b"200 secure match=mail.example.com servername=hostname\n" == encode_reply(
        Answer(Status.OK, SECURE)
    )


def test_percent_in_found_value_is_sent_as_25() -> None:
    """#197: a raw ``%`` would make Postfix's unquote fail (malformed, retry)."""
    assert b"200 x { policy_string = share: 50%25 }\n" == encode_reply(
        Answer(Status.OK, "x { policy_string = share: 50% }")
    )


def test_control_characters_in_found_value_are_encoded() -> None:
    """#197: a newline in the value must not end the reply early; CR, TAB, NUL, DEL too."""
    assert b"200 a%0Ab%0Dc%09d%00e%7Ff\n" == encode_reply(Answer(Status.OK, "a\nb\rc\td\x00e\x7ff"))


def test_spaces_in_found_value_stay_raw() -> None:
    """#197: spaces may stay raw in replies."""
    assert b"200 a b  c\n" == encode_reply(Answer(Status.OK, "a b  c"))


def test_not_found_reply_is_500_then_a_space() -> None:
    """#193: ``500\\n`` without a space is malformed for Postfix; there must be a text."""
    reply = encode_reply(NOTFOUND)
    assert b"500 " == reply[:4]
    assert reply.endswith(b"\n")
    assert (5, b"not found") == postfix_read_reply(reply)


def test_not_found_reply_carries_its_reason() -> None:
    """#193: ``500 <text>``."""
    assert b"500 no policy\n" == encode_reply(Answer(Status.NOTFOUND, "no policy"))


def test_temporary_error_reply_is_400_with_reason() -> None:
    """#194: ``400 <text>`` makes Postfix defer and retry."""
    assert b"400 dns: SERVFAIL\n" == encode_reply(temp("dns: SERVFAIL"))


def test_permanent_error_is_sent_as_400() -> None:
    """#194/#195: tcp_table has no permanent-error code; PERM is sent as 400."""
    assert b"400 bad request\n" == encode_reply(perm("bad request"))


def test_percent_in_error_reason_is_encoded() -> None:
    """#197: the encoding applies to every reply text, not just found values."""
    assert b"400 100%25 broken\n" == encode_reply(temp("100% broken"))


def test_over_long_found_value_falls_back_to_the_short_form() -> None:
    """#198: a reply over 4096 bytes makes Postfix retry and defer; drop TLSRPT attributes."""
    answer = Answer(Status.OK, SECURE + " " + "x" * MAX_REPLY_BYTES, fallback=SECURE)
    assert b"200 " + SECURE.encode() + b"\n" == encode_reply(answer)


def test_found_value_exactly_at_the_limit_is_sent_in_full() -> None:
    """#198: 4096 bytes including the newline is still allowed."""
    text = "x" * (MAX_REPLY_BYTES - len("200 \n"))
    reply = encode_reply(Answer(Status.OK, text, fallback=SECURE))
    assert MAX_REPLY_BYTES == len(reply)
    assert (2, text.encode()) == postfix_read_reply(reply)


def test_found_value_one_byte_over_the_limit_falls_back() -> None:
    """#198: 4097 bytes including the newline is too long."""
    text = "x" * (MAX_REPLY_BYTES - len("200 \n") + 1)
    assert b"200 " + SECURE.encode() + b"\n" == encode_reply(
        Answer(Status.OK, text, fallback=SECURE)
    )


def test_encoding_expansion_counts_toward_the_limit() -> None:
    """#197/#198: ``%`` becomes three bytes, so 1500 of them do not fit in 4096."""
    assert b"200 " + SECURE.encode() + b"\n" == encode_reply(
        Answer(Status.OK, "%" * 1500, fallback=SECURE)
    )


def test_too_long_found_value_without_fallback_is_a_temporary_error() -> None:
    """#198: nothing that fits can be said, so Postfix should defer (400)."""
    reply = encode_reply(Answer(Status.OK, "x" * MAX_REPLY_BYTES))
    assert reply.startswith(b"400 ")
    assert len(reply) <= MAX_REPLY_BYTES


def test_too_long_found_value_and_too_long_fallback_is_a_temporary_error() -> None:
    """#198: if the short form does not fit either, answer 400 rather than overflow."""
    answer = Answer(Status.OK, "x" * 5000, fallback="y" * 5000)
    reply = encode_reply(answer)
    assert 4 == postfix_read_reply(reply)[0]
    assert reply.startswith(b"400 ")


def test_long_error_reason_is_cut_to_the_limit() -> None:
    """#198: error replies are bounded too."""
    reply = encode_reply(temp("e" * 10_000))
    assert MAX_REPLY_BYTES == len(reply)
    assert (4, b"e" * (MAX_REPLY_BYTES - 5)) == postfix_read_reply(reply)


def test_long_error_reason_is_not_cut_inside_a_percent_escape() -> None:
    """#197/#198: cutting ``%25`` to ``%2`` leaves a raw ``%`` that Postfix cannot unquote.

    "400 " plus 4091 bytes of ``%25%25...`` ends in ``%2``; the cut must fall on an
    escape boundary so the reply stays well-formed.
    """
    reply = encode_reply(temp("%" * 5000))
    code, value = postfix_read_reply(reply)
    assert 4 == code
    assert set(value) <= {ord("%")}


# --- reply properties ---------------------------------------------------------------------

_TRICKY = st.sampled_from(["%", "\n", "\r", "\t", "\x00", "\x7f", " ", "é", "{", "}", "a"])
# Answer texts come from strictly decoded bytes, so they never hold lone surrogates.
_CHARS = st.one_of(_TRICKY, st.characters(exclude_categories=("Cs",)))
_SHORT = st.text(_CHARS, max_size=40)
_LONG = st.tuples(st.text(_CHARS, min_size=1, max_size=8), st.integers(1, 2500)).map(
    lambda t: t[0] * t[1]
)
_TEXTS = st.one_of(_SHORT, _LONG)
_ANSWERS = st.builds(Answer, st.sampled_from(list(Status)), _TEXTS, st.one_of(st.none(), _TEXTS))


@given(_ANSWERS)
def test_every_reply_is_one_well_formed_line_within_4096_bytes(answer: Answer) -> None:
    """#193, #197, #198: for any answer, Postfix can parse the reply."""
    reply = encode_reply(answer)
    code, value = postfix_read_reply(reply)  # raises if malformed or too long
    expected_code = {Status.OK: 2, Status.NOTFOUND: 5, Status.TEMP: 4, Status.PERM: 4}
    if answer.status is Status.OK and code == 4:
        return  # neither text nor fallback fits (#198)
    assert expected_code[answer.status] == code
    if answer.status is Status.OK:
        assert value.decode() in {answer.text, answer.fallback}
    else:
        assert (answer.text or "not found").encode().startswith(value)


@given(st.text(_CHARS, max_size=300))
def test_short_found_value_survives_the_round_trip(text: str) -> None:
    """#197: what Postfix unquotes is exactly the value we meant to send."""
    assert (2, text.encode()) == postfix_read_reply(encode_reply(Answer(Status.OK, text)))
