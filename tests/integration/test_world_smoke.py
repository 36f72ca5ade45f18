"""Smoke tests proving the integration-test world behaves as the daemon's
tests will assume: DNS (with DNSSEC) and the HTTPS policy server."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.world import World, ZoneSpec
from tests.world.dns import query

POLICY = "version: STSv1\r\nmode: enforce\r\nmx: mx.x.test\r\nmax_age: 86400\r\n"


def txt_strings(response: dns.message.Message) -> list[str]:
    """Each TXT record of the answer, its character-strings joined."""
    return [
        b"".join(rdata.strings).decode()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rdata in rrset
    ]


def fetch(
    world: World,
    hostname: str,
    *,
    path: str = "/.well-known/mta-sts.txt",
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPResponse, bytes]:
    """GET over TLS from the policy server with SNI and Host = ``hostname``."""
    context = context or ssl.create_default_context(cafile=str(world.ca_file))
    request = f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(world.https.address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response, response.read()


def test_signed_zone_answers_are_validated_with_ad_flag(world: World) -> None:
    world.dns.set("_mta-sts.signed.test", "TXT", ['"v=STSv1; i" "d=abc"'])
    world.dns.apply()

    response = query(world.resolver, "_mta-sts.signed.test", "TXT")

    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AD
    assert txt_strings(response) == ["v=STSv1; id=abc"]


def test_unsigned_zone_answers_have_no_ad_flag(world: World) -> None:
    world.dns.set("_mta-sts.plain.unsigned", "TXT", ['"v=STSv1; id=1;"'])
    world.dns.apply()

    response = query(world.resolver, "_mta-sts.plain.unsigned", "TXT")

    assert response.rcode() == dns.rcode.NOERROR
    assert not response.flags & dns.flags.AD
    assert txt_strings(response) == ["v=STSv1; id=1;"]


def test_names_outside_the_world_do_not_exist(world: World) -> None:
    response = query(world.resolver, "_mta-sts.example.com", "TXT", timeout=1.0)

    assert response.rcode() == dns.rcode.NXDOMAIN


def test_changes_are_visible_through_the_resolver_after_apply(world: World) -> None:
    world.publish_sts("change.test", POLICY, policy_id="1")
    assert txt_strings(query(world.resolver, "_mta-sts.change.test", "TXT")) == ["v=STSv1; id=1;"]

    world.publish_sts("change.test", POLICY, policy_id="2")
    assert txt_strings(query(world.resolver, "_mta-sts.change.test", "TXT")) == ["v=STSv1; id=2;"]

    world.remove_sts_txt("change.test")
    gone = query(world.resolver, "_mta-sts.change.test", "TXT")
    assert gone.rcode() == dns.rcode.NXDOMAIN
    assert gone.flags & dns.flags.AD  # authenticated denial of existence


def test_publish_sts_points_the_policy_host_at_the_server(world: World) -> None:
    world.publish_sts("addr.unsigned", POLICY)

    response = query(world.resolver, "mta-sts.addr.unsigned", "A")

    assert [rdata.address for rrset in response.answer for rdata in rrset] == [world.https.host]


def test_query_count_counts_client_queries_but_not_world_probes(world: World) -> None:
    world.publish_sts("count.test", POLICY)  # apply() probes the name itself
    assert world.dns.query_count("_mta-sts.count.test", "TXT") == 0

    query(world.resolver, "_mta-sts.count.test", "TXT")
    query(world.resolver, "_MTA-STS.count.test.", "TXT")

    assert world.dns.query_count("_mta-sts.count.test", "TXT") == 2
    assert world.dns.query_count("_mta-sts.count.test", "A") == 0


def test_policy_is_served_by_sni_and_host_and_requests_are_counted(world: World) -> None:
    world.publish_sts("x.test", POLICY)
    before = world.https.requests("mta-sts.x.test")

    status, response, body = fetch(world, "mta-sts.x.test")

    assert status == 200
    assert response.getheader("Content-Type") == "text/plain"
    assert body == POLICY.encode()
    assert world.https.requests("mta-sts.x.test") == before + 1


def test_other_paths_get_404(world: World) -> None:
    world.publish_sts("paths.test", POLICY)

    status, _, _ = fetch(world, "mta-sts.paths.test", path="/")

    assert status == 404


def test_extra_headers_replace_default_headers(world: World) -> None:
    world.publish_sts("headers.test", "abc", extra_headers={"content-length": "2", "X-A": "b"})

    _, response, body = fetch(world, "mta-sts.headers.test")

    assert response.getheader("X-A") == "b"
    assert response.getheader("Content-Length") == "2"
    assert body == b"ab"


def test_redirect_status_and_location_are_sent(world: World) -> None:
    world.publish_sts("redir.test", "", status=301, location="https://elsewhere.test/")

    status, response, _ = fetch(world, "mta-sts.redir.test")

    assert status == 301
    assert response.getheader("Location") == "https://elsewhere.test/"


def test_drip_server_sends_the_body_slowly(world: World) -> None:
    world.publish_sts("slow.test", "abcdef", drip_interval=0.1)

    started = time.monotonic()
    status, _, body = fetch(world, "mta-sts.slow.test")

    assert (status, body) == (200, b"abcdef")
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize("cert", ["untrusted", "expired", "wrong-name"])
def test_bad_certificates_fail_verification(world: World, cert: str) -> None:
    world.publish_sts(f"{cert}.test", POLICY, cert=cert)

    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(world, f"mta-sts.{cert}.test")
    assert world.https.handshakes(f"mta-sts.{cert}.test") >= 1
    assert world.https.requests(f"mta-sts.{cert}.test") == 0


def test_untrusted_certificate_is_valid_for_its_own_ca(world: World) -> None:
    world.publish_sts("own-ca.test", POLICY, cert="untrusted")

    context = ssl.create_default_context(cafile=str(world.untrusted_ca.ca_file))

    status, _, _ = fetch(world, "mta-sts.own-ca.test", context=context)

    assert status == 200


def test_cn_only_certificate_fails_without_common_name_fallback(world: World) -> None:
    # Python's ssl falls back to the subject CN when there is no SAN, unless
    # told not to; the cn-only certificate must fail once that is off.
    world.publish_sts("cn-only.test", POLICY, cert="cn-only")
    strict = ssl.create_default_context(cafile=str(world.ca_file))
    strict.hostname_checks_common_name = False

    with pytest.raises(ssl.SSLCertVerificationError):
        fetch(world, "mta-sts.cn-only.test", context=strict)


def test_unknown_sni_fails_the_handshake(world: World) -> None:
    with pytest.raises(ssl.SSLError):
        fetch(world, "mta-sts.nobody.test")


def test_response_follows_the_host_header_when_it_differs_from_sni(world: World) -> None:
    world.publish_sts("sni-a.test", "policy a")
    world.publish_sts("sni-b.test", "policy b")
    context = ssl.create_default_context(cafile=str(world.ca_file))
    request = b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.sni-b.test\r\n\r\n"

    with (
        socket.create_connection(world.https.address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="mta-sts.sni-a.test") as tls,
    ):
        tls.sendall(request)
        response = http.client.HTTPResponse(tls)
        response.begin()
        body = response.read()

    assert body == b"policy b"


def test_policy_server_survives_misbehaving_and_concurrent_clients(world: World) -> None:
    world.publish_sts("busy.test", POLICY)
    address = world.https.address
    with socket.create_connection(address, timeout=5) as plain:  # no TLS at all
        plain.sendall(b"GET / HTTP/1.1\r\n\r\n")
        plain.recv(100)
    with socket.create_connection(address, timeout=5):  # connect and hang up
        pass
    context = ssl.create_default_context(cafile=str(world.ca_file))
    with (
        socket.create_connection(address, timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="mta-sts.busy.test") as tls,
    ):
        tls.sendall(b"GET /.well-known/mta-")  # half a request, then hang up

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: fetch(world, "mta-sts.busy.test")[0], range(64)))

    assert statuses == [200] * 64


def test_stopped_policy_server_refuses_connections_then_restarts(world: World) -> None:
    world.publish_sts("restart.test", POLICY)
    port = world.https.port
    world.https.stop()
    try:
        with pytest.raises(ConnectionRefusedError):
            fetch(world, "mta-sts.restart.test")
    finally:
        world.https.start()

    assert world.https.port == port
    assert fetch(world, "mta-sts.restart.test")[0] == 200


def test_stopped_resolver_makes_queries_time_out(world: World) -> None:
    world.dns.set("up.unsigned", "A", ["127.0.0.9"])
    world.dns.apply()
    world.dns.stop_resolver()
    world.dns.stop_resolver()  # stopping twice is harmless
    try:
        with pytest.raises(dns.exception.Timeout):
            query(world.resolver, "up.unsigned", "A", timeout=0.5)
    finally:
        world.dns.start_resolver()
    world.dns.start_resolver()  # so is starting twice

    assert query(world.resolver, "up.unsigned", "A").rcode() == dns.rcode.NOERROR


def test_bogus_zone_answers_servfail(tmp_path: Path) -> None:
    world = World.start(tmp_path, zones=(ZoneSpec("test."), ZoneSpec("bogus.", kind="bogus")))
    try:
        world.dns.set("_mta-sts.x.bogus", "TXT", ['"v=STSv1; id=1;"'])
        world.dns.apply()

        response = query(world.resolver, "_mta-sts.x.bogus", "TXT")

        assert response.rcode() == dns.rcode.SERVFAIL
        assert query(world.resolver, "test.", "SOA").flags & dns.flags.AD
    finally:
        world.close()
