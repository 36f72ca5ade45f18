"""Socketmap netstring framing (Postfix socketmap_table(5); checklist section 10, #175-#187)."""

from collections.abc import Iterable, Sequence
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_sts.core.netstring import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    NetstringDecoder,
    encode,
)
from postfix_sts.errors import FramingError

# The decoder accepts at most 8 length digits (docstring of netstring.py, #184/#185).
LENGTH_DIGITS_ALLOWED = 8


def drain(decoder: NetstringDecoder) -> list[bytes]:
    """Pull every complete payload currently buffered."""
    payloads: list[bytes] = []
    while (payload := decoder.next_payload()) is not None:
        payloads.append(payload)
    return payloads


def decode_chunks(chunks: Iterable[bytes], max_payload: int = MAX_REQUEST_BYTES) -> list[bytes]:
    """Feed the chunks one at a time, draining after each, as a server read loop would."""
    decoder = NetstringDecoder(max_payload)
    payloads: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        payloads.extend(drain(decoder))
    return payloads


def split_at(data: bytes, points: Sequence[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (any order, repeats allowed)."""
    cuts = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in pairwise(cuts)]


def framing_error(data: bytes, max_payload: int = MAX_REQUEST_BYTES) -> FramingError:
    """Feed ``data`` and return the FramingError that decoding it must raise."""
    decoder = NetstringDecoder(max_payload)
    decoder.feed(data)
    with pytest.raises(FramingError) as excinfo:
        drain(decoder)
    return excinfo.value


# --- well-formed input ---------------------------------------------------------------


def test_basic_request_decodes_to_its_payload() -> None:
    """#175: ``16:postfix good.loc,`` carries the request ``postfix good.loc``."""
    assert [b"postfix good.loc"] == decode_chunks([b"16:postfix good.loc,"])


def test_incomplete_netstring_needs_more_data() -> None:
    """#183: a truncated ``3:aa`` is not an error yet, just incomplete."""
    decoder = NetstringDecoder()
    decoder.feed(b"3:aa")
    assert decoder.next_payload() is None
    decoder.feed(b"a,")
    assert b"aaa" == decoder.next_payload()


def test_payload_is_not_returned_before_its_terminator_arrives() -> None:
    """The ``,`` must be seen before the payload is released (netstring framing)."""
    decoder = NetstringDecoder()
    decoder.feed(b"3:abc")
    assert decoder.next_payload() is None
    decoder.feed(b",")
    assert b"abc" == decoder.next_payload()
    assert 0 == decoder.buffered


def test_empty_decoder_needs_more_data() -> None:
    assert NetstringDecoder().next_payload() is None


def test_pipelined_requests_are_returned_in_order() -> None:
    """#181: two requests back-to-back on one connection give two payloads, in order."""
    data = b"16:postfix good.loc,17:postfix other.loc,"
    assert [b"postfix good.loc", b"postfix other.loc"] == decode_chunks([data])


def test_pipelined_partial_request_stays_buffered() -> None:
    """#181: after a complete request, the start of the next one waits in the buffer."""
    decoder = NetstringDecoder()
    decoder.feed(b"1:a,5:he")
    assert b"a" == decoder.next_payload()
    assert decoder.next_payload() is None
    assert len(b"5:he") == decoder.buffered


def test_fragmented_input_from_checklist_is_reassembled() -> None:
    """#182: the segments ``1:`` / ``X,9:123`` / ``456`` / ``789`` / ``,2:`` / ``ok,``."""
    chunks = [b"1:", b"X,9:123", b"456", b"789", b",2:", b"ok,"]
    assert [b"X", b"123456789", b"ok"] == decode_chunks(chunks)


def test_every_two_way_split_of_a_stream_gives_the_same_payloads() -> None:
    """#182: a TCP segment boundary anywhere in the stream changes nothing."""
    payloads = [b"postfix example.com", b"", b"x", b"postfix a:b,c"]
    stream = b"".join(encode(p) for p in payloads)
    for point in range(len(stream) + 1):
        assert payloads == decode_chunks(split_at(stream, [point])), f"split at {point}"


def test_byte_at_a_time_input_gives_the_same_payloads() -> None:
    """#182, #189: a client trickling one byte per segment is decoded the same."""
    payloads = [b"hello", b"", b"postfix example.com"]
    stream = b"".join(encode(p) for p in payloads)
    assert payloads == decode_chunks(stream[i : i + 1] for i in range(len(stream)))


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        (b"05:hello,", b"hello"),
        (b"00:,", b""),
        (b"00000005:hello,", b"hello"),
    ],
)
def test_leading_zeros_in_the_length_are_accepted(data: bytes, payload: bytes) -> None:
    """#184 [IMPL]: Postfix's own reader accepts leading zeros, so do we (up to 8 digits)."""
    assert [payload] == decode_chunks([data])


def test_empty_payload_is_a_valid_netstring() -> None:
    assert [b""] == decode_chunks([b"0:,"])


def test_payload_may_contain_framing_characters() -> None:
    """The length, not the content, delimits the payload: ``:`` and ``,`` inside are data."""
    assert [b"a:1,b,"] == decode_chunks([b"6:a:1,b,,"])


# --- the 10 000-byte request cap --------------------------------------------------------


def test_request_of_exactly_the_cap_is_accepted() -> None:
    """#180: a 10 000-byte payload is the largest Postfix may send; it is decoded."""
    payload = b"k" * MAX_REQUEST_BYTES
    assert 10_000 == MAX_REQUEST_BYTES
    assert [payload] == decode_chunks([encode(payload)])


def test_request_one_byte_over_the_cap_is_rejected_from_its_length_alone() -> None:
    """#180: ``10001:`` is refused before any of the payload has arrived."""
    error = framing_error(b"10001:")
    assert "too-long" == error.reason


def test_custom_cap_is_honoured() -> None:
    assert [b"abcd"] == decode_chunks([b"4:abcd,"], max_payload=4)
    assert "too-long" == framing_error(b"5:", max_payload=4).reason


def test_reply_cap_is_postfix_default() -> None:
    """#179: Postfix's socketmap_max_reply_size default is 100 000."""
    assert 100_000 == MAX_REPLY_BYTES


# --- absurd lengths ---------------------------------------------------------------------


def test_absurd_length_is_rejected_before_the_colon_arrives() -> None:
    """#185: ``9999999999`` cannot be a valid length; reject at once, allocate nothing."""
    decoder = NetstringDecoder()
    decoder.feed(b"9999999999")
    with pytest.raises(FramingError):
        decoder.next_payload()


def test_absurd_length_with_colon_is_rejected() -> None:
    """#185: ``9999999999:`` from the checklist."""
    error = framing_error(b"9999999999:")
    assert error.reason in {"bad-length", "too-long"}


def test_longest_accepted_length_prefix_waits_for_more_data() -> None:
    """#184/#185: up to 8 digits without a colon is still a possible length."""
    decoder = NetstringDecoder()
    decoder.feed(b"0" * LENGTH_DIGITS_ALLOWED)
    assert decoder.next_payload() is None


def test_length_prefix_one_digit_too_long_is_rejected() -> None:
    """#185: a ninth digit is rejected without waiting for the colon."""
    assert "bad-length" == framing_error(b"0" * (LENGTH_DIGITS_ALLOWED + 1)).reason


def test_large_length_is_rejected_without_buffering_the_payload() -> None:
    """#185: ``99999999:`` is rejected as soon as the colon arrives."""
    assert "too-long" == framing_error(b"99999999:").reason


# --- malformed framing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b":,", "bad-length"),  # #183: empty length
        (b"aaa:aaa", "bad-length"),  # #183: non-digit length
        (b"a", "bad-length"),  # rejected from the first byte
        (b" 5:hello,", "bad-length"),  # whitespace before the length
        (b"5 :hello,", "bad-length"),  # whitespace before the colon
        (b"-1:,", "bad-length"),  # a sign is not a digit
        (b"+1:a,", "bad-length"),
        (b"3:aaa_", "bad-terminator"),  # #183: wrong terminator
        (b"0:_", "bad-terminator"),  # #183
        (b"3:aaaa,", "bad-terminator"),  # payload longer than announced
        (b"1:a,x", "bad-length"),  # garbage after a good netstring
    ],
)
def test_malformed_netstring_raises_framing_error_with_reason(data: bytes, reason: str) -> None:
    """#183: malformed netstrings close the connection with a FramingError naming why."""
    decoder = NetstringDecoder()
    decoder.feed(data)
    with pytest.raises(FramingError) as excinfo:
        drain(decoder)
    assert reason == excinfo.value.reason


def test_good_payload_before_garbage_is_still_delivered() -> None:
    """#181/#183: requests before a framing error are answered; the error comes after them."""
    decoder = NetstringDecoder()
    decoder.feed(b"1:a,x")
    assert b"a" == decoder.next_payload()
    with pytest.raises(FramingError):
        decoder.next_payload()


def test_framing_error_is_an_sts_error_with_label() -> None:
    """errors.py: every failure carries a reason label; str() shows it."""
    error = framing_error(b"x")
    assert str(error).startswith("bad-length: ")


# --- encode -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "framed"),
    [
        (b"", b"0:,"),
        (b"hello", b"5:hello,"),
        (b"NOTFOUND ", b"9:NOTFOUND ,"),  # #176
        (b"postfix good.loc", b"16:postfix good.loc,"),  # #175
    ],
)
def test_encode_frames_payload_as_netstring(payload: bytes, framed: bytes) -> None:
    assert framed == encode(payload)


@given(st.binary(max_size=2_000))
def test_encode_then_decode_round_trips(payload: bytes) -> None:
    assert [payload] == decode_chunks([encode(payload)])


# --- properties -------------------------------------------------------------------------

payload_lists = st.lists(st.binary(max_size=40), max_size=6)


@given(payloads=payload_lists, data=st.data())
def test_fragmented_input_split_anywhere_gives_the_same_payloads(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """#182: however the stream is cut into segments, the same payloads come out, in order."""
    stream = b"".join(encode(p) for p in payloads)
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=len(stream) + 1))
    assert payloads == decode_chunks(split_at(stream, points))


# Netstring-ish fragments make the random input reach every branch of the decoder.
framing_tokens = st.one_of(
    st.binary(max_size=20),
    st.sampled_from([b":", b",", b"0", b"1", b"5", b"9", b"00", b"10000", b"10001", b"99999999"]),
    st.binary(max_size=30).map(encode),
)


@given(st.lists(st.lists(framing_tokens, max_size=6).map(b"".join), max_size=8))
def test_any_bytes_give_only_payloads_or_framing_error(chunks: list[bytes]) -> None:
    """netstring.py contract (h11 fuzz style): nothing but FramingError is ever raised.

    Also checks the documented bounds: a payload never exceeds the cap, and once the
    decoder needs more data it buffers less than one maximal framed request (#180, #185).
    """
    max_payload = 64
    decoder = NetstringDecoder(max_payload)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while (payload := decoder.next_payload()) is not None:
                assert isinstance(payload, bytes)
                assert len(payload) <= max_payload
            assert decoder.buffered <= LENGTH_DIGITS_ALLOWED + 1 + max_payload
    except FramingError:
        pass


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_framing_error(first: bytes, second: bytes) -> None:
    """netstring.py contract: any input yields payloads, None, or FramingError."""
    decoder = NetstringDecoder()
    try:
        for chunk in (first, second):
            decoder.feed(chunk)
            drain(decoder)
    except FramingError:
        pass
