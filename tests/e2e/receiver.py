"""Receiving MX hosts for the end-to-end tests: tiny SMTP servers (stdlib
asyncio, one background event loop for all of them) that accept every message
and remember what they received and whether it came over TLS.

Each server listens on its own loopback address (127.0.60.N) and port 25 (or
the harness's SMTP port), and either offers STARTTLS with a given certificate
or does not offer it at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_CALL_TIMEOUT = 10.0  # seconds the test thread waits for the server loop
_LINE_TIMEOUT = 30.0  # seconds a client may stay silent
_LINE_LIMIT = 64 * 1024
_MAX_MESSAGE = 1024 * 1024


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted by a receiving server."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    #: Negotiated TLS version ("TLSv1.3"), or None if it came in plaintext.
    tls_version: str | None


@dataclass(frozen=True)
class ServerCertificate:
    """The certificate chain and key a server presents after STARTTLS."""

    chain: Path
    key: Path


class ReceivingServer:
    """One MX host. Create through :meth:`ReceiverPool.start`."""

    def __init__(
        self,
        hostname: str,
        address: str,
        port: int,
        certificate: ServerCertificate | None,
    ) -> None:
        self.hostname = hostname
        self.address = address
        self.port = port
        self._lock = threading.Lock()
        self._messages: list[ReceivedMessage] = []
        self._sessions = 0
        self._tls_handshakes = 0
        self._sni: list[str | None] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.certificate: ServerCertificate | None = None
        self._tls: ssl.SSLContext | None = None
        self.present(certificate)

    def present(self, certificate: ServerCertificate | None) -> None:
        """Offer STARTTLS with ``certificate`` from the next session on
        (``None``: stop offering STARTTLS)."""
        context = None
        if certificate is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(certificate.chain, certificate.key)
            context.sni_callback = self._record_sni
        with self._lock:
            self.certificate = certificate
            self._tls = context

    def __repr__(self) -> str:
        tls = "STARTTLS" if self.offers_starttls else "no STARTTLS"
        return f"<ReceivingServer {self.hostname} {self.address}:{self.port} {tls}>"

    # ------------------------------------------------------------ queries

    @property
    def offers_starttls(self) -> bool:
        return self.tls_context is not None

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        with self._lock:
            return self._tls

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._lock:
            return list(self._messages)

    @property
    def sessions(self) -> int:
        """SMTP connections accepted so far."""
        with self._lock:
            return self._sessions

    @property
    def tls_handshakes(self) -> int:
        """STARTTLS handshakes that completed (whatever the client thought of
        the certificate)."""
        with self._lock:
            return self._tls_handshakes

    @property
    def sni(self) -> list[str | None]:
        """The server name sent by the client in each TLS handshake."""
        with self._lock:
            return list(self._sni)

    # ----------------------------------------------------------- serving

    def _record_sni(
        self, _connection: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        with self._lock:
            self._sni.append(name)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.address, self.port, reuse_address=True, limit=_LINE_LIMIT
        )

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with self._lock:
            self._sessions += 1
        try:
            await _Session(self, reader, writer).run()
        except Exception as exc:  # a client dropping the connection is normal
            log.debug("%s: session ended: %r", self.hostname, exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    def record_message(self, message: ReceivedMessage) -> int:
        with self._lock:
            self._messages.append(message)
            return len(self._messages)

    def record_handshake(self) -> None:
        with self._lock:
            self._tls_handshakes += 1


class _Session:
    """The server side of one SMTP connection (RFC 5321, just enough)."""

    def __init__(
        self, server: ReceivingServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.tls_context = server.tls_context  # fixed for the session
        self.tls_version: str | None = None
        self.mail_from: str | None = None
        self.recipients: list[str] = []
        self.done = False
        self.handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "EHLO": self.ehlo,
            "HELO": self.helo,
            "STARTTLS": self.starttls,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.data,
            "RSET": self.rset,
            "NOOP": self.noop,
            "QUIT": self.quit,
        }

    async def run(self) -> None:
        await self.reply(f"220 {self.server.hostname} ESMTP e2e receiver")
        while not self.done:
            line = (await self.read_line()).decode("ascii", "replace")
            verb, _, argument = line.partition(" ")
            handler = self.handlers.get(verb.upper())
            if handler is None:
                await self.reply("502 5.5.2 Command not implemented")
            else:
                await handler(argument)

    # ------------------------------------------------------------ commands

    async def ehlo(self, _argument: str) -> None:
        self.reset()
        lines = [self.server.hostname, "8BITMIME", "SIZE 10240000"]
        if self.tls_context is not None and self.tls_version is None:
            lines.insert(1, "STARTTLS")
        for index, text in enumerate(lines):
            separator = " " if index == len(lines) - 1 else "-"
            await self.reply(f"250{separator}{text}")

    async def helo(self, _argument: str) -> None:
        self.reset()
        await self.reply(f"250 {self.server.hostname}")

    async def starttls(self, _argument: str) -> None:
        if self.tls_context is None or self.tls_version is not None:
            await self.reply("502 5.5.1 STARTTLS not available")
            return
        await self.reply("220 2.0.0 Ready to start TLS")
        await self.writer.start_tls(self.tls_context)
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.tls_version = ssl_object.version() if ssl_object else "TLS"
        self.server.record_handshake()
        self.reset()

    async def mail(self, argument: str) -> None:
        self.reset()
        self.mail_from = _path(argument)
        await self.reply("250 2.1.0 Ok")

    async def rcpt(self, argument: str) -> None:
        if self.mail_from is None:
            await self.reply("503 5.5.1 MAIL first")
            return
        self.recipients.append(_path(argument))
        await self.reply("250 2.1.5 Ok")

    async def data(self, _argument: str) -> None:
        if self.mail_from is None or not self.recipients:
            await self.reply("503 5.5.1 RCPT first")
            return
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        data = await self.read_data()
        message = ReceivedMessage(self.mail_from, tuple(self.recipients), data, self.tls_version)
        number = self.server.record_message(message)
        self.reset()
        await self.reply(f"250 2.0.0 Ok: queued as RCV{number}")

    async def rset(self, _argument: str) -> None:
        self.reset()
        await self.reply("250 2.0.0 Ok")

    async def noop(self, _argument: str) -> None:
        await self.reply("250 2.0.0 Ok")

    async def quit(self, _argument: str) -> None:
        await self.reply("221 2.0.0 Bye")
        self.done = True

    # ------------------------------------------------------------- helpers

    def reset(self) -> None:
        self.mail_from = None
        self.recipients = []

    async def reply(self, text: str) -> None:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()

    async def read_line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), _LINE_TIMEOUT)
        if not line:
            raise ConnectionResetError("client closed the connection")
        return line.rstrip(b"\r\n")

    async def read_data(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            line = await self.read_line()
            if line == b".":
                return b"\r\n".join(lines) + b"\r\n"
            if line.startswith(b"."):
                line = line[1:]  # dot-unstuffing
            size += len(line) + 2
            if size > _MAX_MESSAGE:
                raise ValueError("message too large")
            lines.append(line)


def _path(argument: str) -> str:
    """``FROM:<a@b> SIZE=1`` -> ``a@b``."""
    _, _, rest = argument.partition(":")
    address = rest.strip().split(" ")[0]
    return address.strip("<>")


class ReceiverPool:
    """Runs any number of :class:`ReceivingServer` on one event loop in a
    background thread."""

    def __init__(self) -> None:
        self._servers: list[ReceivingServer] = []
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_log_loop_error)
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="e2e-receivers", daemon=True
        )
        self._thread.start()

    def start(
        self,
        hostname: str,
        address: str,
        port: int,
        certificate: ServerCertificate | None,
    ) -> ReceivingServer:
        """Listen on ``address:port``; offer STARTTLS only with a ``certificate``."""
        server = ReceivingServer(hostname, address, port, certificate)
        self._call(server._start())
        self._servers.append(server)
        return server

    def stop_all(self) -> None:
        """Stop every server started so far (the pool stays usable)."""
        servers, self._servers = self._servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                self._call(server._stop())

    def close(self) -> None:
        """Stop all servers and the loop thread; safe to call twice."""
        if self._loop.is_closed():
            return
        try:
            self.stop_all()
            self._call(_cancel_other_tasks())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_CALL_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(_CALL_TIMEOUT)


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Aborted TLS handshakes (a client rejecting our certificate) land here.
    log.debug("receiver: %s (%r)", context.get("message"), context.get("exception"))
