"""The strict HTTPS policy fetch of RFC 8461 section 3.3, at the edge.

``GET https://mta-sts.<domain>/.well-known/mta-sts.txt`` where:

* the host is resolved by the daemon's own resolver and the connection goes to
  that address (non-public addresses refused unless allowed), with SNI and
  ``Host: mta-sts.<domain>`` (section 3.3, section 7.1);
* TLS 1.2 or later, the certificate verified for that name against DNS-ID SANs
  only, no common-name fallback (section 3.3; checklist #37);
* only HTTP 200 is a policy; redirects are not followed (section 3.3);
* the media type is ``text/plain`` (section 3.2); the body is streamed and cut
  off at 64 KiB; no HTTP caching (section 3.3);
* one overall deadline covers DNS, connect, TLS, headers and body.

Every failure raises :class:`FetchError` with a specific ``reason``.
"""

import asyncio
import ipaddress
import ssl

import httpx

from postfix_sts.core.sts_policy import MAX_POLICY_BYTES, is_policy_media_type
from postfix_sts.dns_client import DnsClient
from postfix_sts.errors import DnsLookupError, FetchError

POLICY_PATH = "/.well-known/mta-sts.txt"


def policy_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate checks of RFC 8461 section 3.3 and TLS 1.2+ (section 7.2)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.hostname_checks_common_name = False
    context.set_alpn_protocols(["http/1.1"])
    return context


class PolicyFetcher:
    """Fetches policy bodies; stateless between fetches (no connection reuse)."""

    def __init__(
        self,
        dns_client: DnsClient,
        ssl_context: ssl.SSLContext,
        *,
        deadline: float,
        allow_private_addresses: bool,
        port: int = 443,
    ) -> None:
        self._dns = dns_client
        self._ssl = ssl_context
        self._deadline = deadline
        self._allow_private = allow_private_addresses
        self._port = port

    async def fetch(self, domain: str) -> bytes:
        """Return the policy body for ``domain`` or raise FetchError."""
        host = f"mta-sts.{domain}"
        try:
            async with asyncio.timeout(self._deadline):
                return await self._fetch(host)
        except TimeoutError:
            raise FetchError(
                f"https://{host}{POLICY_PATH}: no complete answer within {self._deadline:g} s",
                reason="timeout",
            ) from None

    async def _fetch(self, host: str) -> bytes:
        addresses = await self._addresses(host)
        refused: list[str] = []
        for address in addresses:
            try:
                return await self._get(host, address)
            except FetchError as exc:
                if exc.reason != "connect":
                    raise
                refused.append(exc.detail)
        raise FetchError("; ".join(refused), reason="connect")

    async def _addresses(self, host: str) -> list[str]:
        try:
            found = await self._dns.addresses(host)
        except DnsLookupError as exc:
            raise FetchError(exc.detail, reason="dns") from None
        if not found:
            raise FetchError(f"{host} has no A or AAAA record", reason="no-address")
        if self._allow_private:
            return found
        public = [a for a in found if ipaddress.ip_address(a).is_global]
        if not public:
            raise FetchError(
                f"{host} resolves only to non-public addresses ({', '.join(found)})",
                reason="private-address",
            )
        return public

    async def _get(self, host: str, address: str) -> bytes:
        netloc = f"[{address}]" if ":" in address else address
        url = f"https://{netloc}:{self._port}{POLICY_PATH}"
        where = f"https://{host}{POLICY_PATH} at {address}"
        headers = {"Host": host, "Accept": "text/plain", "Accept-Encoding": "identity"}
        async with httpx.AsyncClient(
            verify=self._ssl,
            trust_env=False,
            follow_redirects=False,
            timeout=httpx.Timeout(self._deadline),
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client:
            try:
                request = client.build_request(
                    "GET", url, headers=headers, extensions={"sni_hostname": host}
                )
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                tls = _ssl_error(exc)
                if tls is not None:
                    raise FetchError(f"{where}: TLS: {tls}", reason="tls-invalid") from None
                raise FetchError(f"{where}: cannot connect: {exc}", reason="connect") from None
            except httpx.HTTPError as exc:
                raise FetchError(
                    f"{where}: {type(exc).__name__}: {exc}", reason="protocol"
                ) from None
            try:
                return await _read_policy(response, where)
            finally:
                await response.aclose()


async def _read_policy(response: httpx.Response, where: str) -> bytes:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        raise FetchError(
            f"{where}: HTTP {status} redirect to {location[:200]!r} not followed", reason="redirect"
        )
    if status != 200:
        raise FetchError(f"{where}: HTTP {status}, only 200 is a policy", reason="http-status")
    content_type = response.headers.get("content-type")
    if not is_policy_media_type(content_type):
        raise FetchError(
            f"{where}: media type {content_type!r} is not text/plain", reason="content-type"
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_POLICY_BYTES:
        raise FetchError(
            f"{where}: Content-Length {declared} exceeds {MAX_POLICY_BYTES} bytes",
            reason="too-large",
        )
    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_POLICY_BYTES:
                raise FetchError(
                    f"{where}: body exceeds {MAX_POLICY_BYTES} bytes", reason="too-large"
                )
    except httpx.HTTPError as exc:
        raise FetchError(f"{where}: reading body: {exc}", reason="protocol") from None
    return bytes(body)


def _ssl_error(exc: BaseException) -> str | None:
    """The TLS verification or handshake failure behind a connect error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None
