"""The socketmap server (Postfix socketmap_table(5)): netstrings ``<name> <key>``.

The map name selects the profile; an unknown name gets the ``default`` profile
(docs/rfc-decisions.md, checklist #187).  Framing errors get ``PERM <reason>`` and
close the connection (#183).
"""

from collections.abc import Callable

from postfix_sts.core.answer import Answer, parse_socketmap_request
from postfix_sts.core.netstring import NetstringDecoder
from postfix_sts.core.render import Profile
from postfix_sts.metrics import Metrics
from postfix_sts.servers.pipeline import Lookup, PipelinedProtocol


class SocketmapProtocol(PipelinedProtocol):
    name = "socketmap"

    def __init__(
        self,
        lookup: Lookup,
        idle_timeout: float,
        metrics: Metrics,
        profile_for: Callable[[str], Profile],
    ) -> None:
        super().__init__(lookup, idle_timeout, metrics)
        self._decoder = NetstringDecoder()
        self._profile_for = profile_for

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_request(self) -> tuple[Profile, str] | Answer | None:
        payload = self._decoder.next_payload()
        if payload is None:
            return None
        request = parse_socketmap_request(payload)
        if isinstance(request, Answer):
            return request
        map_name, key = request
        return self._profile_for(map_name), key

    def encode(self, answer: Answer) -> bytes:
        return answer.socketmap_frame
