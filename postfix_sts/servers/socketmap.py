"""The socketmap server (Postfix socketmap_table(5)): netstrings ``<name> <key>``.

The map name selects the profile; an unknown name gets the ``default`` profile
(docs/rfc-decisions.md, checklist #187).  Framing errors get ``PERM <reason>`` and
close the connection (#183).  A read holding exactly one request that was
answered from the cache before is answered by its raw bytes
(:meth:`postfix_sts.service.PolicyService.fast_answer`).
"""

from collections.abc import Callable
from typing import Protocol

from postfix_sts.core.answer import Answer, parse_socketmap_request
from postfix_sts.core.netstring import NetstringDecoder
from postfix_sts.core.render import Profile
from postfix_sts.metrics import Metrics
from postfix_sts.servers.pipeline import Lookup, PipelinedProtocol


class FastLookup(Lookup, Protocol):
    def fast_answer(self, raw: bytes) -> bytes | None: ...


class SocketmapProtocol(PipelinedProtocol):
    name = "socketmap"

    def __init__(
        self,
        lookup: FastLookup,
        idle_timeout: float,
        metrics: Metrics,
        profile_for: Callable[[str], Profile],
    ) -> None:
        super().__init__(lookup, idle_timeout, metrics)
        self._fast_answer = lookup.fast_answer
        self._decoder = NetstringDecoder()
        self._profile_for = profile_for

    def data_received(self, data: bytes) -> None:
        """The fast path: one whole request in one read, answered from the cache before."""
        if not self._pending and not self._decoder.buffered and data[-1:] == b",":
            colon = data.find(b":", 0, 9)
            if colon > 0 and data[:colon].isdigit() and int(data[:colon]) == len(data) - colon - 2:
                frame = self._fast_answer(data[colon + 1 : -1])
                if frame is not None and self._transport is not None:
                    self._last_activity = self._loop.time()
                    self._transport.write(frame)
                    return
        super().data_received(data)

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_request(self) -> tuple[Profile, str, bytes] | Answer | None:
        payload = self._decoder.next_payload()
        if payload is None:
            return None
        request = parse_socketmap_request(payload)
        if isinstance(request, Answer):
            return request
        map_name, key = request
        return self._profile_for(map_name), key, payload

    def encode(self, answer: Answer) -> bytes:
        return answer.socketmap_frame
