"""MTA-STS policy body, RFC 8461 section 3.2.

ABNF (RFC 8461 section 3.2, with the ``sts-policy-mx`` fix of the published RFC)::

    sts-policy-record      = sts-policy-field *WSP
                             *(sts-policy-term sts-policy-field *WSP)
                             [sts-policy-term]
    sts-policy-field       = sts-policy-version / sts-policy-mode / sts-policy-max-age
                             / sts-policy-mx / sts-policy-extension
    sts-policy-field-delim = ":" *WSP
    sts-policy-version     = %s"version" sts-policy-field-delim %s"STSv1"
    sts-policy-mode        = %s"mode" sts-policy-field-delim
                             (%s"testing" / %s"enforce" / %s"none")
    sts-policy-mx          = %s"mx" sts-policy-field-delim ["*."] Domain   ; RFC 5321 Domain
    sts-policy-max-age     = %s"max_age" sts-policy-field-delim 1*10(DIGIT)
    sts-policy-extension   = sts-policy-ext-name sts-policy-field-delim sts-policy-ext-value
    sts-policy-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
    sts-policy-ext-value   = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
    sts-policy-vchar       = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
    sts-policy-term        = LF / CRLF

Rules from the prose: the first occurrence of a single-valued key wins and later
ones are ignored (last paragraph of section 3.2); unknown keys are ignored; ``mx``
is required at least once unless the mode is ``none``; an ``mx`` value must be an
A-label (section 3.2).  Choices where the RFC is unclear are recorded in
docs/rfc-decisions.md: ``max_age`` above 31557600 is capped to it (erratum 7282),
a trailing dot on an ``mx`` is dropped, an ``mx`` that is an IP address makes the
policy invalid, and empty lines after the last field are tolerated (a blank line
between fields is invalid).
"""

import enum
import re
from dataclasses import dataclass

from postfix_sts.errors import PolicySyntaxError

#: RFC 8461 section 3.2: "max_age ... up to 31557600" (one year).
MAX_AGE_LIMIT = 31_557_600

#: RFC 8461 section 3.3 suggests 64 KiB as the limit on a policy body.
MAX_POLICY_BYTES = 64 * 1024

_LINE = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,31}):[ \t]*"
    r"(?P<value>[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?)[ \t]*"
)
_LDH_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LDH_LABEL}(?:\.{_LDH_LABEL})*")
_MAX_AGE = re.compile(r"[0-9]{1,10}")
_MAX_DOMAIN_LENGTH = 253


class Mode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """A valid policy: ``mx`` holds lower-case A-label patterns, first-seen order, no repeats."""

    mode: Mode
    max_age: int
    mx: tuple[str, ...]
    text: str


def parse_policy(body: bytes) -> StsPolicy:
    """Parse a policy body strictly, or raise :class:`PolicySyntaxError` with the cause."""
    if len(body) > MAX_POLICY_BYTES:
        raise PolicySyntaxError(f"policy body of {len(body)} bytes exceeds {MAX_POLICY_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicySyntaxError(f"policy body is not UTF-8 (byte {exc.start})") from None
    lines = text.split("\n")
    while len(lines) > 1 and lines[-1] in ("", "\r"):
        lines.pop()
    fields: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _LINE.fullmatch(line)
        if match is None:
            what = "empty line" if not line.strip() else f"malformed line {line[:80]!r}"
            raise PolicySyntaxError(f"line {number}: {what}")
        name, value = match["name"], match["value"]
        if name == "mx":
            mx.append(_mx_pattern(value, number))
        elif name not in fields:
            fields[name] = value
    return _build(fields, mx, text)


def _build(fields: dict[str, str], mx: list[str], text: str) -> StsPolicy:
    version = fields.get("version")
    if version is None:
        raise PolicySyntaxError("no version field")
    if version != "STSv1":
        raise PolicySyntaxError(f"version {version[:20]!r} is not STSv1")
    raw_mode = fields.get("mode")
    if raw_mode is None:
        raise PolicySyntaxError("no mode field")
    try:
        mode = Mode(raw_mode)
    except ValueError:
        raise PolicySyntaxError(f"mode {raw_mode[:20]!r} is not enforce, testing or none") from None
    raw_max_age = fields.get("max_age")
    if raw_max_age is None:
        raise PolicySyntaxError("no max_age field")
    if _MAX_AGE.fullmatch(raw_max_age) is None:
        raise PolicySyntaxError(f"max_age {raw_max_age[:20]!r} is not 1 to 10 digits")
    if not mx and mode is not Mode.NONE:
        raise PolicySyntaxError(f"mode {mode.value} requires at least one mx field")
    return StsPolicy(
        mode=mode,
        max_age=min(int(raw_max_age), MAX_AGE_LIMIT),
        mx=tuple(dict.fromkeys(mx)),
        text=text,
    )


def _mx_pattern(value: str, number: int) -> str:
    """Validate one ``mx`` value: ``["*."] Domain`` in A-label form (section 3.2)."""
    pattern = value.lower()
    if pattern.endswith("."):
        pattern = pattern[:-1]
    if (
        len(pattern) > _MAX_DOMAIN_LENGTH
        or not pattern.isascii()
        or _MX_PATTERN.fullmatch(pattern) is None
    ):
        raise PolicySyntaxError(f"line {number}: mx {value[:80]!r} is not a domain or *.domain")
    if pattern.rpartition(".")[2].isdigit():
        raise PolicySyntaxError(f"line {number}: mx {value[:80]!r} is an IP address")
    return pattern


def is_policy_media_type(content_type: str | None) -> bool:
    """True for ``text/plain`` with or without parameters (RFC 8461 section 3.2).

    The type and subtype compare case-insensitively (RFC 2045); parameters such as
    ``charset`` are ignored (checklist #44-#46).
    """
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "text/plain"
