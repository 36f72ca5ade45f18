"""Scenario building for the end-to-end tests: MX hosts with the certificate
a test asks for, their MX/A/TLSA records in the world's zones, MTA-STS
policies, and sending a message through the sending Postfix.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.world import World

from .postfix import Delivery, SendingPostfix
from .receiver import ReceiverPool, ReceivingServer, ServerCertificate
from .resolver import Port53Resolver

#: What an MX host presents after STARTTLS ("none": it does not offer STARTTLS).
MxTls = Literal["valid", "untrusted", "wrong-name", "none"]
#: Receiving servers listen on 127.0.60.1, 127.0.60.2, ... (one per MX host).
MX_NETWORK = "127.0.60."
#: Domains answered by a static ``texthash:`` map placed before the daemon in
#: ``smtp_tls_policy_maps``: they check the harness's DANE side (DNSSEC, TLSA,
#: Postfix's DANE support) independently of the daemon.
STATIC_DANE_OK = "static-dane-ok.test"
STATIC_DANE_MISMATCH = "static-dane-mismatch.test"
STATIC_TLS_POLICY = {STATIC_DANE_OK: "dane-only", STATIC_DANE_MISMATCH: "dane-only"}


def _addresses() -> Iterator[str]:
    for last in range(1, 255):
        yield f"{MX_NETWORK}{last}"


_ADDRESSES = _addresses()  # shared by the session: addresses are never reused


def tlsa_3_1_1(chain_pem: bytes) -> str:
    """TLSA rdata "3 1 1 <sha256(SubjectPublicKeyInfo)>" for the chain's leaf."""
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


class MailWorld:
    """One test's mail topology on top of the shared world and Postfix."""

    def __init__(
        self,
        world: World,
        resolver: Port53Resolver,
        postfix: SendingPostfix,
        receivers: ReceiverPool,
    ) -> None:
        self.world = world
        self.resolver = resolver
        self.postfix = postfix
        self.receivers = receivers
        self._counter = itertools.count(1)

    # ------------------------------------------------------------- topology

    def mx_host(self, hostname: str, tls: MxTls) -> ReceivingServer:
        """Start a receiving server for ``hostname`` on a fresh 127.0.60.N
        address and publish ``hostname A 127.0.60.N`` (on :meth:`apply`).

        ``tls``: "valid" (issued by the world's CA for ``hostname``),
        "untrusted" (right name, unknown CA), "wrong-name" (world's CA,
        another name) or "none" (no STARTTLS offered)."""
        address = next(_ADDRESSES)
        certificate = self._certificate(hostname, tls)
        server = self.receivers.start(hostname, address, self.postfix.smtp_port, certificate)
        self.world.dns.set(hostname, "A", [address])
        return server

    def change_tls(self, mx: ReceivingServer, tls: MxTls) -> None:
        """From the next connection on, ``mx`` presents another certificate."""
        mx.present(self._certificate(mx.hostname, tls))

    def _certificate(self, hostname: str, tls: MxTls) -> ServerCertificate | None:
        if tls == "valid":
            return ServerCertificate(*self.world.ca.issue([hostname]))
        if tls == "untrusted":
            return ServerCertificate(*self.world.untrusted_ca.issue([hostname]))
        if tls == "wrong-name":
            return ServerCertificate(*self.world.ca.issue([f"other-{hostname}"]))
        return None

    def route(self, domain: str, *mx_hosts: ReceivingServer) -> None:
        """Publish ``domain MX`` pointing at ``mx_hosts`` (preference 10, 20...)."""
        values = [f"{10 * (n + 1)} {mx.hostname}." for n, mx in enumerate(mx_hosts)]
        self.world.dns.set(domain, "MX", values)

    def publish_tlsa(self, mx: ReceivingServer, *, matching: bool = True) -> str:
        """Publish ``_PORT._tcp.<mx> TLSA 3 1 1`` for the server's key, or,
        with ``matching=False``, for a key the server does not have."""
        if matching:
            assert mx.certificate is not None, "a TLSA record for a host without TLS"
            chain = mx.certificate.chain.read_bytes()
        else:
            other = self.world.untrusted_ca.issue([f"not-{mx.hostname}"])[0]
            chain = other.read_bytes()
        rdata = tlsa_3_1_1(chain)
        self.world.dns.set(f"_{self.postfix.smtp_port}._tcp.{mx.hostname}", "TLSA", [rdata])
        return rdata

    def publish_sts(self, domain: str, mode: str, mx_patterns: list[str]) -> None:
        """Publish an MTA-STS policy (TXT record and HTTPS policy file)."""
        policy = f"version: STSv1\nmode: {mode}\n"
        policy += "".join(f"mx: {pattern}\n" for pattern in mx_patterns)
        policy += "max_age: 86400\n"
        self.world.publish_sts(domain, policy)  # applies pending DNS changes too

    def apply(self) -> None:
        """Make every pending DNS change visible to the daemon and to Postfix."""
        self.world.dns.apply()
        self.resolver.flush()

    # ---------------------------------------------------------------- mail

    def send(self, domain: str, *, local_part: str = "user") -> Delivery:
        """Submit one message to ``<local_part>@<domain>`` and return
        Postfix's first delivery attempt for it (sent, deferred or bounced)."""
        self.apply()
        recipient = f"{local_part}{next(self._counter)}@{domain}"
        offset = self.postfix.log_offset()
        queue_id = self.postfix.submit(recipient)
        return self.postfix.wait_for_attempt(queue_id, recipient, offset=offset)

    def retry(self, delivery: Delivery) -> Delivery:
        """Have Postfix retry deferred mail now; return that next attempt."""
        offset = self.postfix.log_offset()
        self.postfix.retry(delivery.queue_id)
        return self.postfix.wait_for_attempt(delivery.queue_id, delivery.recipient, offset=offset)
