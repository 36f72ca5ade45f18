"""An HTTPS server for MTA-STS policy files, run by an asyncio loop in a
background thread of the test process (so tests can count requests).

The certificate is picked by SNI and the response by the HTTP Host header,
from what was registered with :meth:`PolicyServer.serve`. Every connection
gets one response and is then closed.
"""

from __future__ import annotations

import asyncio
import http
import logging
import ssl
import threading
import weakref
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .ca import TestCA

log = logging.getLogger(__name__)
T = TypeVar("T")
CertKind = Literal["valid", "expired", "wrong-name", "untrusted", "cn-only"]
CERT_KINDS: tuple[CertKind, ...] = ("valid", "expired", "wrong-name", "untrusted", "cn-only")
WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"
_HEAD_TIMEOUT = 10.0  # seconds a client may take to send its request head
_HEAD_LIMIT = 16 * 1024  # bytes of request head accepted
_CALL_TIMEOUT = 10.0  # seconds the test thread waits for the server loop


@dataclass(frozen=True)
class Route:
    """What GET /.well-known/mta-sts.txt returns for one host."""

    body: bytes
    status: int = 200
    content_type: str | None = "text/plain"
    cert: CertKind = "valid"
    location: str | None = None
    drip_interval: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as received (``host`` without port, lower case)."""

    sni: str | None
    host: str | None
    method: str
    path: str
    headers: dict[str, str]


def _normalize_host(value: str | None) -> str | None:
    if not value:
        return None
    host = value.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and not name.endswith("]"):
        host = name
    return host.rstrip(".")


class PolicyServer:
    """HTTPS server answering ``GET /.well-known/mta-sts.txt`` per host."""

    def __init__(self, ca: TestCA, untrusted_ca: TestCA, host: str = "127.0.0.1") -> None:
        self._ca = ca
        self._untrusted_ca = untrusted_ca
        self.host = host
        self.port = 0  # chosen by the kernel on first start(), then kept
        self._routes: dict[str, Route] = {}
        self._contexts: dict[tuple[str, CertKind], ssl.SSLContext] = {}
        self._records: list[RequestRecord] = []
        self._handshakes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        # SNI per TLS connection (servers cannot read it back from the SSLObject).
        self._sni: weakref.WeakKeyDictionary[ssl.SSLObject | ssl.SSLSocket, str] = (
            weakref.WeakKeyDictionary()
        )
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.sni_callback = self._pick_certificate
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._log_loop_error)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="policy-server", daemon=True
        )
        self._thread.start()

    # ----------------------------------------------------------- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        """Listen (again) on :attr:`address`."""
        self._call(self._start())

    def stop(self) -> None:
        """Stop listening and drop open connections: new ones are refused."""
        self._call(self._stop())

    def close(self) -> None:
        """Stop and end the background thread; safe to call twice."""
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                self._call(self._shutdown())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=_CALL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    # ----------------------------------------------------------- behaviour

    def serve(
        self,
        hostname: str,
        body: str | bytes,
        *,
        status: int = 200,
        content_type: str | None = "text/plain",
        cert: CertKind = "valid",
        location: str | None = None,
        drip_interval: float | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        """Register the response for ``https://<hostname>/.well-known/mta-sts.txt``.

        ``cert`` selects the certificate presented for SNI ``hostname``:
        "valid", "expired", "wrong-name" (valid, for another name),
        "untrusted" (from the untrusted CA) or "cn-only" (name only in the
        subject CN). ``drip_interval`` sends the body one byte at a time.
        ``extra_headers`` are added to, or replace, the default headers
        (Content-Length, Content-Type, Location, Connection: close).
        """
        if cert not in CERT_KINDS:
            raise ValueError(f"cert must be one of {CERT_KINDS}, not {cert!r}")
        hostname = hostname.lower().rstrip(".")
        route = Route(
            body=body.encode() if isinstance(body, str) else body,
            status=status,
            content_type=content_type,
            cert=cert,
            location=location,
            drip_interval=drip_interval,
            extra_headers=dict(extra_headers or {}),
        )
        context = self._context_for(hostname, cert)  # built outside the lock: slow-ish
        with self._lock:
            self._contexts[(hostname, cert)] = context
            self._routes[hostname] = route

    def unserve(self, hostname: str) -> None:
        """Forget ``hostname``: its TLS handshakes fail again."""
        with self._lock:
            self._routes.pop(hostname.lower().rstrip("."), None)

    def requests(self, hostname: str) -> int:
        """GET requests received with ``Host: hostname`` (any path)."""
        hostname = hostname.lower().rstrip(".")
        with self._lock:
            return sum(1 for r in self._records if r.method == "GET" and r.host == hostname)

    def handshakes(self, hostname: str) -> int:
        """TLS handshakes started with SNI ``hostname`` (even failed ones)."""
        with self._lock:
            return self._handshakes[hostname.lower().rstrip(".")]

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def reset_counts(self) -> None:
        with self._lock:
            self._records.clear()
            self._handshakes.clear()

    # ----------------------------------------------------------------- TLS

    def _context_for(self, hostname: str, cert: CertKind) -> ssl.SSLContext:
        with self._lock:
            cached = self._contexts.get((hostname, cert))
        if cached is not None:
            return cached
        chain, key = self._certificate(hostname, cert)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(chain, key)
        return context

    def _certificate(self, hostname: str, cert: CertKind) -> tuple[Path, Path]:
        if cert == "expired":
            return self._ca.issue([hostname], expired=True)
        if cert == "wrong-name":
            return self._ca.issue([f"other-{hostname}"])
        if cert == "untrusted":
            return self._untrusted_ca.issue([hostname])
        if cert == "cn-only":
            return self._ca.issue([hostname], cn_only=True)
        return self._ca.issue([hostname])

    def _pick_certificate(
        self, connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        name = _normalize_host(server_name)
        if name is None:
            log.info("TLS handshake refused: client sent no SNI")
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        with self._lock:
            self._handshakes[name] += 1
            route = self._routes.get(name)
            context = self._contexts.get((name, route.cert)) if route else None
        if context is None:
            log.info("TLS handshake refused: unknown SNI %r", server_name)
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        connection.context = context
        self._sni[connection] = name
        return None

    # ---------------------------------------------------------------- HTTP

    async def _start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self.port,
            ssl=self._tls,
            ssl_handshake_timeout=_HEAD_TIMEOUT,
            limit=_HEAD_LIMIT,
            reuse_address=True,
            backlog=256,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if server is not None:
            await server.wait_closed()

    async def _shutdown(self) -> None:
        await self._stop()
        current = asyncio.current_task()
        handlers = [task for task in asyncio.all_tasks() if task is not current]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve_one(reader, writer)
        except Exception as exc:  # a bad client must never hurt the server
            log.debug("connection error: %r", exc)
        finally:
            self._writers.discard(writer)
            writer.close()  # errors while closing go to _log_loop_error

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        sni = self._sni.get(writer.get_extra_info("ssl_object"))
        host = _normalize_host(headers.get("host")) or sni
        if host != sni:
            log.warning("Host header %r differs from SNI %r", host, sni)
        with self._lock:
            self._records.append(RequestRecord(sni, host, method, path, headers))
            route = self._routes.get(host) if host else None

        if method != "GET":
            await self._respond(writer, Route(b"method not allowed\n", status=405))
        elif route is None or path != WELL_KNOWN_PATH:
            await self._respond(writer, Route(b"not found\n", status=404))
        else:
            await self._respond(writer, route)

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, route: Route) -> None:
        try:
            reason = http.HTTPStatus(route.status).phrase
        except ValueError:
            reason = "Unknown"
        headers = {"Content-Length": str(len(route.body)), "Connection": "close"}
        if route.content_type is not None:
            headers["Content-Type"] = route.content_type
        if route.location is not None:
            headers["Location"] = route.location
        for name, value in route.extra_headers.items():  # these replace the defaults
            for default in [key for key in headers if key.lower() == name.lower()]:
                del headers[default]
            headers[name] = value
        head = f"HTTP/1.1 {route.status} {reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n")
        if route.drip_interval is None:
            writer.write(route.body)
            await writer.drain()
            return
        await writer.drain()
        for index in range(len(route.body)):
            await asyncio.sleep(route.drip_interval)
            writer.write(route.body[index : index + 1])
            await writer.drain()

    # ------------------------------------------------------------ plumbing

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT)

    @staticmethod
    def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # Failed handshakes and resets by clients end up here: expected noise.
        log.debug("policy server: %s (%r)", context.get("message"), context.get("exception"))
