"""DANE first (RFC 7672, RFC 8461 section 2) against signed, unsigned and bogus zones.

The world's ``test.`` zone is DNSSEC-signed and validated by its unbound, ``unsigned.``
is not signed, and ``bogus.`` is signed with a key unbound does not trust.  The
daemon decides the level; Postfix does the TLSA checks itself (test_e2e_*).
"""

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.name
import dns.rdatatype
import pytest

from tests.integration.daemon import Daemon, free_port, run_cli
from tests.world import World, dnsconf, procs
from tests.world.dns import answer_rdatas, query

StartDaemon = Callable[..., Daemon]
STS = "version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 86400\n"


def tlsa_usable() -> str:
    return "3 1 1 " + os.urandom(32).hex()


def mx_with_tlsa(world: World, domain: str, host: str, *tlsa: str, ttl: int = 60) -> None:
    world.dns.set(domain, "MX", [f"10 {host}."], ttl=ttl)
    world.dns.set(host, "A", ["127.0.0.10"], ttl=ttl)
    if tlsa:
        world.dns.set(f"_25._tcp.{host}", "TLSA", list(tlsa), ttl=ttl)


def test_full_dane_gives_dane_only(world: World, start_daemon: StartDaemon) -> None:
    """Secure MX, every host with a usable secure TLSA RRset (checklist #128)."""
    mx_with_tlsa(world, "full.dane.test", "mx1.full.dane.test", tlsa_usable())
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("full.dane.test") == "dane-only"


def test_dane_wins_over_mta_sts(world: World, start_daemon: StartDaemon) -> None:
    """RFC 8461 section 2: a DANE domain is never answered ``secure`` (#114)."""
    mx_with_tlsa(world, "both.dane.test", "mx.both.dane.test", tlsa_usable())
    world.publish_sts("both.dane.test", STS.format(mx="mx.both.dane.test"))
    world.https.reset_counts()
    daemon = start_daemon()
    assert daemon.postmap("both.dane.test") == "dane-only"
    assert world.https.requests("mta-sts.both.dane.test") == 0


def test_secure_mx_without_tlsa_falls_through_to_mta_sts(
    world: World, start_daemon: StartDaemon
) -> None:
    """Authenticated absence of TLSA: MTA-STS applies (#115)."""
    mx_with_tlsa(world, "notlsa.dane.test", "mx.notlsa.dane.test")
    world.publish_sts("notlsa.dane.test", STS.format(mx="mx.notlsa.dane.test"))
    daemon = start_daemon()
    assert daemon.postmap("notlsa.dane.test") == (
        "secure match=mx.notlsa.dane.test servername=hostname"
    )


def test_insecure_mx_with_tlsa_is_never_dane_only(world: World, start_daemon: StartDaemon) -> None:
    """An unsigned MX RRset: never dane-only (#129); MTA-STS authenticates instead."""
    world.dns.set("insecure.unsigned", "MX", ["10 mx.insecure.dane.test."])
    world.dns.set("mx.insecure.dane.test", "A", ["127.0.0.10"])
    world.dns.set("_25._tcp.mx.insecure.dane.test", "TLSA", [tlsa_usable()])
    world.publish_sts("insecure.unsigned", STS.format(mx="mx.insecure.dane.test"))
    daemon = start_daemon()
    assert daemon.postmap("insecure.unsigned") == (
        "secure match=mx.insecure.dane.test servername=hostname"
    )
    assert "dane domain=insecure.unsigned answer=none" in daemon.log()


def test_mixed_mx_set_gives_dane_not_dane_only(world: World, start_daemon: StartDaemon) -> None:
    """One host with TLSA, one with none: dane-only would make the second unreachable (#134)."""
    world.dns.set("mixed.dane.test", "MX", ["10 mx1.mixed.dane.test.", "20 mx2.mixed.dane.test."])
    world.dns.set("mx1.mixed.dane.test", "A", ["127.0.0.10"])
    world.dns.set("mx2.mixed.dane.test", "A", ["127.0.0.11"])
    world.dns.set("_25._tcp.mx1.mixed.dane.test", "TLSA", [tlsa_usable()])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("mixed.dane.test") == "dane"


def test_only_unusable_tlsa_gives_dane(world: World, start_daemon: StartDaemon) -> None:
    """PKIX-EE usage and an unknown matching type are unusable: dane, not dane-only (#148)."""
    mx_with_tlsa(
        world,
        "unusable.dane.test",
        "mx.unusable.dane.test",
        "1 1 1 " + os.urandom(32).hex(),
        "3 1 255 " + os.urandom(16).hex(),
    )
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("unusable.dane.test") == "dane"


def test_bogus_zone_gives_temp_naming_the_failure(world: World, start_daemon: StartDaemon) -> None:
    """A validation failure must delay delivery, never downgrade (#116, #131)."""
    world.dns.set("broken.bogus", "MX", ["10 mx.broken.bogus."])
    world.publish_sts("broken.bogus", STS.format(mx="mx.broken.bogus"))
    daemon = start_daemon()
    answer = daemon.query("broken.bogus")[0]
    assert answer.startswith("TEMP DANE: MX broken.bogus: ")
    assert "SERVFAIL" in answer
    assert daemon.postmap("broken.bogus").startswith("ERROR:")


def test_mx_host_in_a_bogus_zone_gives_temp(world: World, start_daemon: StartDaemon) -> None:
    world.dns.set("hostbogus.dane.test", "MX", ["10 mx.hostbogus.bogus."])
    world.dns.set("mx.hostbogus.bogus", "A", ["127.0.0.10"])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.query("hostbogus.dane.test")[0].startswith("TEMP DANE: A mx.hostbogus.bogus: ")


def test_implicit_mx_uses_the_domain_itself(world: World, start_daemon: StartDaemon) -> None:
    """No MX but an address: the domain is its own MX (RFC 7672 section 2.2.2, #140)."""
    world.dns.set("implicit.dane.test", "A", ["127.0.0.10"])
    world.dns.set("_25._tcp.implicit.dane.test", "TLSA", [tlsa_usable()])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("implicit.dane.test") == "dane-only"


def test_null_mx_means_no_dane(world: World, start_daemon: StartDaemon) -> None:
    """RFC 7505 null MX (#141)."""
    world.dns.set("nullmx.dane.test", "MX", ["0 ."])
    world.dns.set("nullmx.dane.test", "A", ["127.0.0.10"])
    world.dns.set("_25._tcp.nullmx.dane.test", "TLSA", [tlsa_usable()])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("nullmx.dane.test") == "NOTFOUND"
    assert "null MX" in daemon.log()


def test_cname_domain_is_followed(world: World, start_daemon: StartDaemon) -> None:
    """The MX lookup follows a secure CNAME (#142)."""
    world.dns.set("alias.dane.test", "CNAME", ["target.dane.test."])
    mx_with_tlsa(world, "target.dane.test", "mx.target.dane.test", tlsa_usable())
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("alias.dane.test") == "dane-only"


def test_cname_mx_host_tlsa_at_expanded_name_then_original(
    world: World, start_daemon: StartDaemon
) -> None:
    """TLSA candidates: the expanded name first, then the original (#145)."""
    world.dns.set("cnhost.dane.test", "MX", ["10 mx.cnhost.dane.test."])
    world.dns.set("mx.cnhost.dane.test", "CNAME", ["real.cnhost.dane.test."])
    world.dns.set("real.cnhost.dane.test", "A", ["127.0.0.10"])
    world.dns.set("_25._tcp.real.cnhost.dane.test", "TLSA", [tlsa_usable()])
    world.dns.set("cnorig.dane.test", "MX", ["10 mx.cnorig.dane.test."])
    world.dns.set("mx.cnorig.dane.test", "CNAME", ["real.cnorig.dane.test."])
    world.dns.set("real.cnorig.dane.test", "A", ["127.0.0.10"])
    world.dns.set("_25._tcp.mx.cnorig.dane.test", "TLSA", [tlsa_usable()])
    world.dns.apply()
    daemon = start_daemon()
    assert daemon.postmap("cnhost.dane.test") == "dane-only"
    assert daemon.postmap("cnorig.dane.test") == "dane-only"


@pytest.fixture
def non_validating_resolver(world: World, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real unbound without the validator module, stubbed to the world's NSD.

    It never sets the AD bit and answers the bogus zone as if it were fine.
    """
    directory = tmp_path / "nonvalidating"
    directory.mkdir()
    address = ("127.0.0.1", free_port())
    conf = directory / "unbound.conf"
    text = dnsconf.unbound_conf(directory, address, world.dns.nsd_address, world.dns.zones)
    assert '"validator iterator"' in text
    conf.write_text(text.replace('"validator iterator"', '"iterator"'))
    daemon = procs.Daemon(
        "unbound (not validating)",
        [procs.find_binary("unbound"), "-d", "-c", str(conf)],
        directory / "unbound.out",
        directory,
    )
    daemon.start()
    try:
        procs.wait_for(
            lambda: (
                bool(
                    answer_rdatas(
                        query(address, "test.", "SOA", tcp=True),
                        dns.name.from_text("test."),
                        dns.rdatatype.SOA,
                    )
                )
                or None
            ),
            timeout=15,
            what="the non-validating unbound",
        )
        yield address
    finally:
        daemon.stop()


def test_resolver_that_does_not_validate_never_gets_dane_answers(
    world: World, start_daemon: StartDaemon, non_validating_resolver: tuple[str, int]
) -> None:
    """A resolver that does not validate fails the self-check: no dane/dane-only from
    its unauthenticated data, an error in the log and 0 in the metric (RFC 7672 2.1.1)."""
    mx_with_tlsa(world, "novalid.dane.test", "mx.novalid.dane.test", tlsa_usable())
    world.publish_sts("novalid.dane.test", STS.format(mx="mx.novalid.dane.test"))
    host, port = non_validating_resolver
    metrics_port = free_port()
    daemon = start_daemon(
        dns={"nameservers": [f"{host}:{port}"]},
        metrics={"listen": f"127.0.0.1:{metrics_port}"},
    )
    assert daemon.postmap("novalid.dane.test") == (
        "secure match=mx.novalid.dane.test servername=hostname"
    )
    assert "resolver does not validate DNSSEC, DANE is off" in daemon.log()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert "postfix_sts_resolver_validating 0.0" in response.read().decode()


def test_dane_can_be_switched_off(world: World, start_daemon: StartDaemon) -> None:
    mx_with_tlsa(world, "off.dane.test", "mx.off.dane.test", tlsa_usable())
    world.publish_sts("off.dane.test", STS.format(mx="mx.off.dane.test"))
    daemon = start_daemon(dane={"enabled": False})
    assert daemon.postmap("off.dane.test") == "secure match=mx.off.dane.test servername=hostname"


def test_dane_decision_is_cached_no_longer_than_the_smallest_ttl(
    world: World, start_daemon: StartDaemon
) -> None:
    """RFC 7672 / checklist #155: the decision lives no longer than its RRsets."""
    # the world's own probes cached these in unbound already, so the remaining TTL
    # the daemon sees is a little under 5 s
    mx_with_tlsa(world, "ttl.dane.test", "mx.ttl.dane.test", tlsa_usable(), ttl=5)
    world.dns.apply()
    daemon = start_daemon()
    world.dns.reset_query_counts()
    assert daemon.postmap("ttl.dane.test") == "dane-only"
    assert daemon.postmap("ttl.dane.test") == "dane-only"
    assert world.dns.query_count("ttl.dane.test", "MX") == 1
    world.dns.set("_25._tcp.mx.ttl.dane.test", "TLSA", ["0 0 1 " + os.urandom(32).hex()], ttl=5)
    world.dns.apply()
    time.sleep(5.2)
    assert daemon.postmap("ttl.dane.test") == "dane"
    assert world.dns.query_count("ttl.dane.test", "MX") == 2


def test_query_explains_the_dane_half(world: World, start_daemon: StartDaemon) -> None:
    mx_with_tlsa(world, "explain.dane.test", "mx.explain.dane.test", tlsa_usable())
    world.dns.apply()
    daemon = start_daemon()
    result = run_cli("query", "explain.dane.test", "--json", "--config", str(daemon.config_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["answer"] == "OK dane-only"
    dane = report["dane"]
    assert dane["resolver_validating"] is True
    assert dane["mx"] == {
        "status": "ok",
        "authenticated": True,
        "records": ["10 mx.explain.dane.test."],
    }
    assert dane["hosts"][0]["name"] == "mx.explain.dane.test"
    assert dane["hosts"][0]["state"] == "usable"
    assert dane["hosts"][0]["tlsa_name"] == "_25._tcp.mx.explain.dane.test"
    assert dane["hosts"][0]["tlsa"][0]["usable"] is True
    assert dane["verdict"] == "dane-only"
