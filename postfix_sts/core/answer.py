"""The four kinds of answer a Postfix lookup table gets, and socketmap requests/replies.

Postfix socketmap_table(5): a request is ``<name> <key>``; a reply is ``OK <data>``,
``NOTFOUND `` (with the documented trailing space, checklist #176), ``TEMP <reason>``
or ``PERM <reason>``.  Status words are case-sensitive (#177).
"""

import enum
import sys
from dataclasses import dataclass, field

from postfix_sts.core.netstring import MAX_REPLY_BYTES, encode


class Status(enum.Enum):
    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    PERM = "PERM"


@dataclass(frozen=True, slots=True)
class Answer:
    """One lookup result: ``text`` is the table value for OK, else the reason.

    ``fallback`` is a shorter OK value without optional attributes, used where
    ``text`` would exceed a protocol's reply limit.  ``kind`` names the answer for
    metrics: the TLS level of an OK answer (``secure``, ``dane-only``, ``dane``),
    else the status in lower case.
    """

    status: Status
    text: str = ""
    fallback: str | None = None
    kind: str = field(default="", compare=False)
    #: The whole socketmap reply, netstring included, built once (the hot path).
    socketmap_frame: bytes = field(default=b"", init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.kind:
            kind = self.text.partition(" ")[0] if self.status is Status.OK else ""
            object.__setattr__(self, "kind", sys.intern(kind or self.status.value.lower()))
        object.__setattr__(self, "socketmap_frame", encode(self.socketmap_payload()))

    def socketmap_payload(self) -> bytes:
        """The socketmap reply payload (without netstring framing), within Postfix's limit."""
        for text in (self.text, self.fallback):
            if text is not None:
                payload = f"{self.status.value} {text}".encode("utf-8", "replace")
                if len(payload) <= MAX_REPLY_BYTES:
                    return payload
        return b"TEMP reply too large for socketmap"


NOTFOUND = Answer(Status.NOTFOUND)


def temp(reason: str) -> Answer:
    """A temporary failure: Postfix defers the mail and retries later (checklist #178)."""
    return Answer(Status.TEMP, _one_line(reason))


def perm(reason: str) -> Answer:
    """A permanent error: Postfix treats the table as misconfigured and defers (#178)."""
    return Answer(Status.PERM, _one_line(reason))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def parse_socketmap_request(payload: bytes) -> tuple[str, str] | Answer:
    """Split ``<name> <key>`` into (map name, key); a request without a key gets PERM.

    A key that is not UTF-8 cannot be a domain name; it is passed on as an
    undecodable marker so the lookup answers NOTFOUND for it.
    """
    name, _, key = payload.partition(b" ")
    if not name or not key:
        return perm("malformed socketmap request: expected '<map name> <key>'")
    try:
        return name.decode("ascii"), key.decode("utf-8")
    except UnicodeDecodeError:
        return NOTFOUND
