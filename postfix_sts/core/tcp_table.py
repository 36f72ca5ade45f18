"""Postfix's tcp_table protocol (tcp_table(5)), sans I/O.

Request: ``get SP <key> LF`` with the key ``%XX``-encoded (``%``, whitespace and
non-printable bytes, checklist #196).  Reply: ``200 SP <value> LF`` (found),
``500 SP <text> LF`` (not found), ``400 SP <text> LF`` (temporary error); three
digits then a space (#193).  A reply may be at most 4096 bytes including the
newline, or Postfix disconnects and retries (#198): a longer answer falls back to
its short form (without TLSRPT attributes), else ``400``.  ``%`` and control
characters in a reply are encoded (#197).
"""

import re

from postfix_sts.core.answer import Answer, Status
from postfix_sts.errors import FramingError

#: Longest request line accepted (Postfix keys are far shorter).
MAX_REQUEST_BYTES = 10_000
#: Postfix's DICT_TCP_MAXLEN: the longest reply line, newline included.
MAX_REPLY_BYTES = 4096

_HEX = re.compile(rb"%([0-9A-Fa-f]{2})")
_NEEDS_QUOTING = re.compile(r"[%\x00-\x1f\x7f]")


class TcpTableDecoder:
    """Incremental line decoder for tcp_table requests."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next request line without its newline, ``None`` if incomplete."""
        end = self._buffer.find(b"\n")
        if (end < 0 and len(self._buffer) > MAX_REQUEST_BYTES) or end > MAX_REQUEST_BYTES:
            raise FramingError(
                f"request line longer than {MAX_REQUEST_BYTES} bytes", reason="too-long"
            )
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line


def parse_request(line: bytes) -> str | Answer:
    """The decoded key of a ``get`` request, or the answer for a request we cannot serve."""
    command, _, encoded = line.partition(b" ")
    if command != b"get":
        return Answer(Status.TEMP, "unsupported tcp_table request: only get is implemented")
    if not encoded:
        return Answer(Status.PERM, "tcp_table get without a key")
    try:
        return _HEX.sub(lambda m: bytes([int(m[1], 16)]), encoded).decode("utf-8")
    except UnicodeDecodeError:
        return Answer(Status.NOTFOUND)


def encode_reply(answer: Answer) -> bytes:
    """The reply line for ``answer``, within Postfix's 4096-byte limit."""
    if answer.status is Status.OK:
        for text in (answer.text, answer.fallback):
            if text is not None:
                line = b"200 " + _quote(text).encode() + b"\n"
                if len(line) <= MAX_REPLY_BYTES:
                    return line
        return b"400 policy answer too long for tcp_table\n"
    code = b"500" if answer.status is Status.NOTFOUND else b"400"
    reason = _quote(answer.text or "not found").encode()
    room = MAX_REPLY_BYTES - len(code) - 2  # the space and the newline
    if len(reason) > room:
        reason = reason[:room]
        escape = reason.rfind(b"%", len(reason) - 2)
        if escape >= 0:  # never cut inside a %XX escape (checklist #197)
            reason = reason[:escape]
    return code + b" " + reason + b"\n"


def _quote(text: str) -> str:
    return _NEEDS_QUOTING.sub(lambda m: f"%{ord(m[0]):02X}", text)
