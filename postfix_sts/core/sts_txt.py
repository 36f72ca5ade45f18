"""MTA-STS TXT record discovery, RFC 8461 section 3.1.

ABNF (RFC 8461 section 3.1; ``%s`` literals are case-sensitive, RFC 7405)::

    sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    sts-field       = sts-id / sts-extension
    sts-field-delim = *WSP ";" *WSP
    sts-version     = %s"v=STSv1"
    sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
    sts-extension   = sts-ext-name "=" sts-ext-value
    sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)   ; no "=", ";", SP or CTLs

Choices where the RFC is unclear (docs/rfc-decisions.md):

* ``v=STSv1 ; id=x`` (WSP before the first ``;``) is valid: the ABNF allows it
  (erratum 6285, checklist #5).
* ``;;``, and trailing WSP without a final ``;``, are invalid, as the ABNF says (#20, #21).
* A field named ``id`` whose value is not 1-32 letters/digits makes the record
  invalid, even though the ABNF could read it as an extension (#17).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass

from postfix_sts.errors import TxtRecordError

_WSP = r"[ \t]"
_DELIM = rf"{_WSP}*;{_WSP}*"
_EXT_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"
_FIELD = rf"{_EXT_NAME}=[\x21-\x3a\x3c\x3e-\x7e]+"
_RECORD = re.compile(rf"v=STSv1(?:{_DELIM}{_FIELD})+(?:{_DELIM})?")
_FIELD_SPLIT = re.compile(_DELIM)
_ID = re.compile(r"[A-Za-z0-9]{1,32}")

_VERSION_PREFIX = b"v=STSv1"


@dataclass(frozen=True, slots=True)
class StsRecord:
    """The one valid STS TXT record of a domain: its policy ``id`` and full text."""

    id: str
    text: str


def is_sts_candidate(record: bytes) -> bool:
    """True if a TXT record begins with ``v=STSv1`` as a whole token.

    Records not beginning so are discarded (section 3.1), so ``v=STSv10;`` or an
    unrelated ``verification=...`` record never counts towards "more than one".
    """
    if not record.startswith(_VERSION_PREFIX):
        return False
    rest = record[len(_VERSION_PREFIX) :]
    return not rest or rest[:1] in (b";", b" ", b"\t")


def select_sts_record(rrset: Sequence[Sequence[bytes]]) -> StsRecord:
    """Pick and parse the STS record from a TXT RRset given as character-strings.

    The character-strings of each record are joined without spaces (section 3.1,
    last paragraph).  Exactly one candidate record must remain after discarding the
    others, else there is no policy (section 3.1); it must then match the ABNF.
    Raises :class:`TxtRecordError` with reason ``no-sts-record``,
    ``multiple-sts-records`` or ``txt-invalid``.
    """
    candidates = [
        joined for joined in (b"".join(strings) for strings in rrset) if is_sts_candidate(joined)
    ]
    if not candidates:
        raise TxtRecordError("no TXT record begins with v=STSv1", reason="no-sts-record")
    if len(candidates) > 1:
        raise TxtRecordError(
            f"{len(candidates)} TXT records begin with v=STSv1; exactly one is required",
            reason="multiple-sts-records",
        )
    return parse_sts_record(candidates[0])


def parse_sts_record(record: bytes) -> StsRecord:
    """Parse one STS TXT record by the section 3.1 ABNF; the first ``id`` wins (section 3.2)."""
    try:
        text = record.decode("ascii")
    except UnicodeDecodeError:
        raise TxtRecordError("STS TXT record is not US-ASCII") from None
    if _RECORD.fullmatch(text) is None:
        raise TxtRecordError(f"STS TXT record does not match RFC 8461 syntax: {text[:200]!r}")
    for field in _FIELD_SPLIT.split(text)[1:]:
        name, _, value = field.partition("=")
        if name == "id":
            if _ID.fullmatch(value) is None:
                raise TxtRecordError(f"id {value[:40]!r} is not 1 to 32 letters or digits")
            return StsRecord(id=value, text=text)
    raise TxtRecordError("STS TXT record has no id field")
