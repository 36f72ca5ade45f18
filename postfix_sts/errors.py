"""The exception tree of postfix-sts.

Every failure carries a short, stable ``reason`` (used as a metric label and in
``TEMP``/``PERM`` reply texts) and a human ``detail`` for the log.  Only the
classes below are raised by ``postfix_sts.core``; anything else escaping from a
core function is a bug.
"""


class StsError(Exception):
    """Root of all postfix-sts errors: ``reason`` is a label, ``detail`` explains."""

    reason: str = "error"

    def __init__(self, detail: str, *, reason: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class FramingError(StsError):
    """The socketmap peer broke netstring framing; the connection must be closed."""

    reason = "framing"


class TxtRecordError(StsError):
    """The ``_mta-sts`` TXT RRset yields no usable STS record (RFC 8461 section 3.1)."""

    reason = "txt-invalid"


class PolicySyntaxError(StsError):
    """The policy body violates RFC 8461 section 3.2; the policy is invalid."""

    reason = "invalid-policy"


class FetchError(StsError):
    """The HTTPS policy fetch failed (RFC 8461 section 3.3).

    ``reason`` is one of: ``dns``, ``no-address``, ``private-address``, ``connect``,
    ``tls-invalid``, ``http-status``, ``redirect``, ``content-type``, ``too-large``,
    ``timeout``, ``protocol``.
    """

    reason = "fetch"


class DnsLookupError(StsError):
    """A DNS lookup failed temporarily (SERVFAIL, timeout, unreachable resolver)."""

    reason = "dns"


class ConfigError(StsError):
    """The configuration file is unusable; ``detail`` names the key and the problem."""

    reason = "config"
