"""What the socketmap and tcp_table servers share: ordered, pipelined answers.

A :class:`PipelinedProtocol` reads requests with its subclass's codec, asks the
:class:`Lookup` for each, and writes answers strictly in request order (Postfix
reuses connections and may pipeline, checklist #181).  A hot-cache answer is
written at once; a pending one is queued and written as soon as it and every
earlier answer are ready.  A framing error gets one error reply and closes the
connection; anything wrong with one request gets an answer for that request only.
Idle connections are closed after ``idle_timeout`` seconds (Postfix reconnects,
#188).  Reading pauses while too many answers are pending on one connection.
"""

import asyncio
import collections
import logging
from typing import Protocol, cast

from postfix_sts.core.answer import Answer, perm, temp
from postfix_sts.core.render import Profile
from postfix_sts.errors import FramingError
from postfix_sts.metrics import Metrics

log = logging.getLogger(__name__)

#: Requests queued on one connection before the server stops reading from it.
MAX_PENDING = 128


class Lookup(Protocol):
    def lookup(
        self, profile: Profile, key: str, raw: bytes = b""
    ) -> "Answer | asyncio.Task[Answer]": ...


class PipelinedProtocol(asyncio.Protocol):
    """One client connection; subclasses provide the framing and a ``name``."""

    name = "pipelined"

    def __init__(self, lookup: Lookup, idle_timeout: float, metrics: Metrics) -> None:
        self._lookup = lookup
        self._metrics = metrics
        self._idle_timeout = idle_timeout
        self._pending: collections.deque[asyncio.Future[Answer]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._paused = False

    # --- framing, provided by subclasses ------------------------------------------

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def next_request(self) -> "tuple[Profile, str, bytes] | Answer | None":
        """The next (profile, key, raw request), an immediate answer, ``None``, or
        FramingError; ``raw`` may be empty where the protocol has no fast path."""
        raise NotImplementedError

    def encode(self, answer: Answer) -> bytes:
        raise NotImplementedError

    # --- lifecycle -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while answers are pending on this connection."""
        return bool(self._pending)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._metrics.connection_opened(self.name)
        self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._metrics.connection_closed(self.name)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for future in self._pending:
            future.remove_done_callback(self._flush)
        self._pending.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        self.feed(data)
        while self._transport is not None:
            try:
                request = self.next_request()
            except FramingError as exc:
                log.warning("%s: closing connection: %s", self.name, exc.detail)
                self._metrics.protocol_error(self.name, exc.reason)
                self._reply(perm(f"{exc.reason}: {exc.detail}"))
                self._transport.close()
                return
            if request is None:
                return
            if isinstance(request, Answer):
                self._reply(request)
            else:
                self._dispatch(*request)

    def _dispatch(self, profile: Profile, key: str, raw: bytes) -> None:
        try:
            result = self._lookup.lookup(profile, key, raw)
        except Exception:
            log.exception("lookup of %r failed", key[:200])
            result = temp("postfix-sts internal error, see its log")
        if isinstance(result, Answer):
            if self._pending:
                self._reply(result)
            elif self._transport is not None:
                self._transport.write(self.encode(result))
            return
        self._pending.append(result)
        result.add_done_callback(self._flush)
        if len(self._pending) >= MAX_PENDING and not self._paused and self._transport:
            self._paused = True
            self._transport.pause_reading()

    def _reply(self, answer: Answer) -> None:
        """Write ``answer`` now, or queue it behind answers still pending."""
        if self._pending:
            done: asyncio.Future[Answer] = self._loop.create_future()
            done.set_result(answer)
            self._pending.append(done)
        elif self._transport is not None:
            self._transport.write(self.encode(answer))

    def _flush(self, _future: "asyncio.Future[Answer]") -> None:
        """Write every answer at the head of the queue that is ready, in order."""
        while self._pending and self._pending[0].done() and self._transport is not None:
            future = self._pending.popleft()
            if future.cancelled() or future.exception() is not None:
                answer = temp("postfix-sts lookup failed, see its log")
            else:
                answer = future.result()
            self._transport.write(self.encode(answer))
        if self._paused and len(self._pending) < MAX_PENDING // 2 and self._transport:
            self._paused = False
            self._transport.resume_reading()

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        idle_for = self._loop.time() - self._last_activity
        if idle_for >= self._idle_timeout and not self._pending:
            self._transport.close()
            return
        self._idle_timer = self._loop.call_later(
            max(self._idle_timeout - idle_for, 1.0), self._check_idle
        )
