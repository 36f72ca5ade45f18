"""The Python ceiling: a bare asyncio socketmap server that answers every request
with one constant reply, run on uvloop when it is installed (as postfix-sts is).

It frames netstrings the cheapest correct way (length prefix, payload, comma) and
does nothing else: no key parsing, no cache, no logging.  Whatever postfix-sts
spends beyond this is the cost of its own lookup path.

    python bench/bare_server.py --port 8462 [--host 127.0.0.1] [--reply 'OK ...']
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

DEFAULT_REPLY = "OK secure match=mx.example.test servername=hostname"


class ConstantReply(asyncio.Protocol):
    """Answers each complete netstring request with the same framed reply."""

    def __init__(self, framed_reply: bytes) -> None:
        self._reply = framed_reply
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        replies = 0
        while True:
            colon = buffer.find(b":")
            if colon < 0:
                break
            end = colon + 1 + int(buffer[:colon])
            if len(buffer) <= end:
                break
            buffer = buffer[end + 1 :]
            replies += 1
        self._buffer = buffer
        if replies and self._transport is not None:
            self._transport.write(self._reply * replies)


async def serve(host: str, port: int, reply: str) -> None:
    payload = reply.encode()
    framed = b"%d:%s," % (len(payload), payload)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ConstantReply(framed), host, port, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"bare server listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default=DEFAULT_REPLY)
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415  (optional, as in postfix-sts)
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.reply))
    else:
        uvloop.run(serve(args.host, args.port, args.reply))


if __name__ == "__main__":
    main()
