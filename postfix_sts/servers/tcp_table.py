"""The tcp_table server (Postfix tcp_table(5)): ``get <key>`` lines.

tcp_table carries no map name, so each listener answers with one configured
profile.  Replies stay under Postfix's 4096-byte limit (checklist #198).
"""

from postfix_sts.core.answer import Answer
from postfix_sts.core.render import Profile
from postfix_sts.core.tcp_table import TcpTableDecoder, encode_reply, parse_request
from postfix_sts.servers.pipeline import Lookup, PipelinedProtocol


class TcpTableProtocol(PipelinedProtocol):
    def __init__(self, lookup: Lookup, idle_timeout: float, profile: Profile) -> None:
        super().__init__(lookup, idle_timeout)
        self._decoder = TcpTableDecoder()
        self._profile = profile

    def feed(self, data: bytes) -> None:
        self._decoder.feed(data)

    def next_request(self) -> tuple[Profile, str] | Answer | None:
        line = self._decoder.next_line()
        if line is None:
            return None
        key = parse_request(line)
        if isinstance(key, Answer):
            return key
        return self._profile, key

    def encode(self, answer: Answer) -> bytes:
        return encode_reply(answer)
