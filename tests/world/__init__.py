"""The integration-test world: a test CA, DNS (NSD + validating unbound) and
an HTTPS policy server, all on loopback, in one temp directory.

    world = World.start(tmp_path)
    try:
        world.publish_sts("x.test", "version: STSv1\\nmode: enforce\\n...")
        ...  # point the daemon at world.resolver, world.https.port, world.ca_file
    finally:
        world.close()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ca import TestCA
from .dns import DEFAULT_ZONES, PROBE_SOURCE, DnsWorld
from .https import CertKind, PolicyServer, RequestRecord
from .procs import WorldError, missing_binaries
from .zones import ZoneKind, ZoneSpec

__all__ = [
    "DEFAULT_ZONES",
    "PROBE_SOURCE",
    "CertKind",
    "DnsWorld",
    "PolicyServer",
    "RequestRecord",
    "TestCA",
    "World",
    "WorldError",
    "ZoneKind",
    "ZoneSpec",
    "missing_binaries",
]


class World:
    """Everything a test of the daemon talks to. Build it with :meth:`start`."""

    def __init__(self, directory: Path, zones: tuple[ZoneSpec, ...] = DEFAULT_ZONES) -> None:
        self.directory = directory
        self.ca = TestCA(directory / "pki", "Test World Root CA")
        self.untrusted_ca = TestCA(directory / "pki", "Untrusted Root CA")
        self.dns = DnsWorld(directory / "dns", zones)
        self.https = PolicyServer(self.ca, self.untrusted_ca)

    @classmethod
    def start(
        cls, directory: Path, zones: tuple[ZoneSpec, ...] = DEFAULT_ZONES, https_port: int = 0
    ) -> World:
        """Create and start a world (policy server on ``https_port``, 0: any free
        port); on failure, whatever started is stopped."""
        world = cls(directory, zones)
        world.https.port = https_port
        try:
            world.dns.start()
            world.https.start()
        except BaseException:
            world.close()
            raise
        return world

    def close(self) -> None:
        try:
            self.https.close()
        finally:
            self.dns.close()

    @property
    def ca_file(self) -> Path:
        """PEM bundle of the trusted root (the untrusted CA is not in it)."""
        return self.ca.ca_file

    @property
    def resolver(self) -> tuple[str, int]:
        return self.dns.resolver

    def publish_sts(
        self,
        domain: str,
        policy: str | bytes | None,
        *,
        policy_id: str = "1",
        txt: list[str] | None = None,
        **serve_kwargs: Any,
    ) -> None:
        """Publish an MTA-STS policy for ``domain`` and wait until it is live.

        Sets TXT ``_mta-sts.<domain>`` to ``"v=STSv1; id=<policy_id>;"`` (or
        to the raw presentation-format ``txt`` values), points A
        ``mta-sts.<domain>`` at the policy server and, unless ``policy`` is
        None, serves ``policy`` there (``serve_kwargs`` as for
        :meth:`PolicyServer.serve`).
        """
        policy_host = f"mta-sts.{domain}"
        values = txt if txt is not None else [f'"v=STSv1; id={policy_id};"']
        self.dns.set(f"_mta-sts.{domain}", "TXT", values)
        self.dns.set(policy_host, "A", [self.https.host])
        if policy is not None:
            self.https.serve(policy_host, policy, **serve_kwargs)
        self.dns.apply()

    def remove_sts_txt(self, domain: str) -> None:
        """Delete the ``_mta-sts.<domain>`` TXT record and wait until it is gone."""
        self.dns.delete(f"_mta-sts.{domain}", "TXT")
        self.dns.apply()
