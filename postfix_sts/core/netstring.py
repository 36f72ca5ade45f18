"""Socketmap framing: netstrings ``<length>:<bytes>,`` (Postfix socketmap_table(5)).

Sans-I/O, in the style of h11: the caller feeds bytes with :meth:`NetstringDecoder.feed`
and pulls complete payloads with :meth:`NetstringDecoder.next_payload`, which returns
``None`` when more data is needed or raises :class:`FramingError`.  Nothing else is
raised for any input (a property the tests check with random bytes).
"""

from postfix_sts.errors import FramingError

#: Postfix never sends a query longer than this (DICT_SOCKMAP_DEF_MAX_QUERY, checklist #180);
#: a longer one is hostile or broken and closes the connection.
MAX_REQUEST_BYTES = 10_000

#: Postfix rejects a reply payload longer than this (socketmap_max_reply_size, checklist #179).
MAX_REPLY_BYTES = 100_000

# Digits needed for MAX_REQUEST_BYTES plus room for a few leading zeros, which
# Postfix's own reader accepts (checklist #184).  More digits than this is an
# absurd length and is rejected before anything is allocated (checklist #185).
_MAX_LENGTH_DIGITS = 8


class NetstringDecoder:
    """Incremental netstring decoder with a payload cap.

    The buffer is kept as bytes plus a read offset, so the common case of one
    whole request per read is parsed without copying it around.  It never holds
    more than one capped request plus one read.
    """

    __slots__ = ("_buffer", "_max_payload", "_pos")

    def __init__(self, max_payload: int = MAX_REQUEST_BYTES) -> None:
        self._buffer = b""
        self._pos = 0
        self._max_payload = max_payload

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._pos >= len(self._buffer):
            self._buffer, self._pos = data, 0
        else:
            self._buffer, self._pos = self._buffer[self._pos :] + data, 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as payloads."""
        return len(self._buffer) - self._pos

    def next_payload(self) -> bytes | None:
        """Return the next complete payload, ``None`` if incomplete, or raise FramingError."""
        buf, pos = self._buffer, self._pos
        colon = buf.find(b":", pos, pos + _MAX_LENGTH_DIGITS + 1)
        if colon < 0:
            pending = buf[pos:]
            if len(pending) > _MAX_LENGTH_DIGITS or (pending and not pending.isdigit()):
                raise FramingError(
                    f"bad netstring length prefix {pending[:12]!r}", reason="bad-length"
                )
            return None
        digits = buf[pos:colon]
        if not digits or not digits.isdigit():
            raise FramingError(f"bad netstring length {digits!r}", reason="bad-length")
        length = int(digits)
        if length > self._max_payload:
            raise FramingError(
                f"request of {length} bytes exceeds the {self._max_payload}-byte limit",
                reason="too-long",
            )
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        if buf[end] != 0x2C:  # ","
            raise FramingError(
                f"netstring not terminated by ',' (got {buf[end : end + 1]!r})",
                reason="bad-terminator",
            )
        self._pos = end + 1
        return buf[colon + 1 : end]


def encode(payload: bytes) -> bytes:
    """Frame one payload as a netstring."""
    return b"%d:%s," % (len(payload), payload)
