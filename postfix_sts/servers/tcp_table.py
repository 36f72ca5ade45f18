"""The tcp_table server (Postfix tcp_table(5)): ``get <key>`` lines.

tcp_table carries no map name, so the listeners answer with one configured
profile (read per request, so a reload applies to open connections too).
Replies stay under Postfix's 4096-byte limit (checklist #198).
"""

from collections.abc import Callable

from postfix_sts.core.answer import Answer
from postfix_sts.core.render import Profile
from postfix_sts.core.tcp_table import TcpTableDecoder, encode_reply, parse_request
from postfix_sts.metrics import Metrics
from postfix_sts.servers.pipeline import Lookup, PipelinedProtocol


class TcpTableProtocol(PipelinedProtocol):
    name = "tcp_table"

    def __init__(
        self,
        lookup: Lookup,
        idle_timeout: float,
        metrics: Metrics,
        profile: Callable[[], Profile],
    ) -> None:
        super().__init__(lookup, idle_timeout, metrics)
        self._decoder = TcpTableDecoder()
        self._profile = profile

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_request(self) -> tuple[Profile, str, bytes] | Answer | None:
        line = self._decoder.next_line()
        if line is None:
            return None
        key = parse_request(line)
        if isinstance(key, Answer):
            return key
        return self._profile(), key, b""

    def encode(self, answer: Answer) -> bytes:
        return encode_reply(answer)
