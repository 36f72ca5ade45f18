"""The fast lookup path: single-flight, negative cache, background refresh,
failure backoff, tcp_table, TLSRPT attributes and reply-size guards.

Fetches are counted at the world's HTTPS server, TXT queries at its unbound.
"""

import asyncio
import subprocess
import time
from collections.abc import Callable

from tests.integration.daemon import Daemon, eventually, free_port
from tests.world import World

StartDaemon = Callable[..., Daemon]


def policy(*mx: str, mode: str = "enforce", max_age: int = 86400) -> str:
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\n".join(lines) + "\n"


def secure(*mx: str) -> str:
    return f"secure match={':'.join(mx)} servername=hostname"


async def _herd(port: int, key: str, clients: int) -> list[bytes]:
    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = f"postfix {key}".encode()
        writer.write(b"%d:%s," % (len(payload), payload))
        await writer.drain()
        length = int((await reader.readuntil(b":"))[:-1])
        reply = await reader.readexactly(length + 1)
        writer.close()
        return reply[:-1]

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(clients))), 60)


def test_200_simultaneous_first_queries_share_one_resolution(
    world: World, start_daemon: StartDaemon
) -> None:
    """Single-flight: one TXT query and one HTTPS fetch for a cold herd."""
    world.publish_sts("herd.fast.test", policy("mx.herd.test"), drip_interval=0.005)
    daemon = start_daemon()
    world.dns.reset_query_counts()
    world.https.reset_counts()
    replies = asyncio.run(_herd(daemon.port, "herd.fast.test", 200))
    assert set(replies) == {b"OK " + secure("mx.herd.test").encode()}
    assert len(replies) == 200
    assert world.https.requests("mta-sts.herd.fast.test") == 1
    assert world.dns.query_count("_mta-sts.herd.fast.test", "TXT") == 1


def test_no_policy_domain_is_remembered_within_the_negative_ttl_bounds(
    world: World, start_daemon: StartDaemon
) -> None:
    """NXDOMAIN at _mta-sts is cached for the SOA minimum (60 s here), capped at 2 s."""
    daemon = start_daemon(cache={"negative_ttl_min": 1, "negative_ttl_max": 2})
    world.dns.reset_query_counts()
    for _ in range(10):
        assert daemon.query("negative.fast.test") == ["NOTFOUND "]
    assert world.dns.query_count("_mta-sts.negative.fast.test", "TXT") == 1
    time.sleep(2.2)
    assert daemon.query("negative.fast.test") == ["NOTFOUND "]
    assert world.dns.query_count("_mta-sts.negative.fast.test", "TXT") == 2


def test_negative_ttl_follows_the_soa_minimum_when_within_bounds(
    world: World, start_daemon: StartDaemon
) -> None:
    """The zone's SOA minimum is 60 s: within [1, 3600] it is used as is."""
    daemon = start_daemon(cache={"negative_ttl_min": 1, "negative_ttl_max": 3600})
    world.dns.reset_query_counts()
    assert daemon.query("soamin.fast.test") == ["NOTFOUND "]
    time.sleep(2.2)
    assert daemon.query("soamin.fast.test") == ["NOTFOUND "]
    assert world.dns.query_count("_mta-sts.soamin.fast.test", "TXT") == 1


def test_policy_in_use_is_refreshed_in_the_background_before_it_expires(
    world: World, start_daemon: StartDaemon
) -> None:
    """RFC 8461 section 3.3: refresh before expiry; a busy domain never hits a cold fetch."""
    world.publish_sts("refresh.fast.test", policy("mx.refresh.test", max_age=4))
    daemon = start_daemon()
    world.https.reset_counts()
    started = time.monotonic()
    assert daemon.query("refresh.fast.test") == ["OK " + secure("mx.refresh.test")]
    # refresh falls due at half of max_age (2 s) with no query at all
    assert eventually(lambda: world.https.requests("mta-sts.refresh.fast.test") >= 2, 4.0)
    assert time.monotonic() - started < 4.0
    while time.monotonic() - started < 5.0:  # past the first fetch's expiry
        time.sleep(0.1)
    before = world.https.requests("mta-sts.refresh.fast.test")
    assert daemon.query("refresh.fast.test") == ["OK " + secure("mx.refresh.test")]
    assert "reason=refreshed" in daemon.log()
    assert world.https.requests("mta-sts.refresh.fast.test") == before  # served from cache


def test_unused_policy_is_not_refreshed_and_ages_out(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("idle.fast.test", policy("mx.idle.test", max_age=3))
    daemon = start_daemon(sts={"refresh_idle_limit": 1})
    world.https.reset_counts()
    assert daemon.query("idle.fast.test") == ["OK " + secure("mx.idle.test")]
    assert eventually(
        lambda: "refresh: policy of idle.fast.test expired unused" in daemon.log(), 6.0
    )
    assert world.https.requests("mta-sts.idle.fast.test") == 1


def test_failed_fetch_with_nothing_cached_backs_off(
    world: World, start_daemon: StartDaemon
) -> None:
    """An outage of one policy server does not cost a fetch per delivery."""
    world.publish_sts("backoff.fast.test", policy("mx.backoff.test"), status=503)
    daemon = start_daemon(cache={"failure_backoff_min": 1, "failure_backoff_max": 10})
    world.https.reset_counts()
    host = "mta-sts.backoff.fast.test"
    assert daemon.query("backoff.fast.test", "backoff.fast.test") == ["NOTFOUND ", "NOTFOUND "]
    assert world.https.requests(host) == 1
    time.sleep(1.2)  # first backoff: 1 s
    assert daemon.query("backoff.fast.test") == ["NOTFOUND "]
    assert world.https.requests(host) == 2
    time.sleep(1.2)  # second backoff: 2 s, not over yet
    assert daemon.query("backoff.fast.test") == ["NOTFOUND "]
    assert world.https.requests(host) == 2
    assert "reason=fetch-http-status" in daemon.log()


def _postmap_tcp(daemon: Daemon, port: int, key: str) -> str:
    result = subprocess.run(
        ["postmap", "-c", str(daemon.postfix_dir), "-q", key, f"tcp:127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode == 0:
        return result.stdout.strip()
    return "NOTFOUND" if not result.stderr.strip() else "ERROR: " + result.stderr.strip()


def test_tcp_table_answers_postmap_like_socketmap(world: World, start_daemon: StartDaemon) -> None:
    """Postfix tcp_table(5) through ``postmap -q KEY tcp:127.0.0.1:PORT`` (#192-#196)."""
    world.publish_sts("tcp.fast.test", policy("mx.tcp.test"))
    world.publish_sts("xn--tcp-bcher-u9a.test", policy("mx.idn.test"))
    port = free_port()
    daemon = start_daemon(server={"tcp_table_listen": [f"127.0.0.1:{port}"]})
    assert _postmap_tcp(daemon, port, "tcp.fast.test") == secure("mx.tcp.test")
    assert _postmap_tcp(daemon, port, "nopolicy.tcp.fast.test") == "NOTFOUND"
    assert _postmap_tcp(daemon, port, ".tcp.fast.test") == "NOTFOUND"
    assert _postmap_tcp(daemon, port, "[tcp.fast.test]:25") == "NOTFOUND"
    assert _postmap_tcp(daemon, port, "tcp-bücher.test") == secure("mx.idn.test")


def _attributes(value: str) -> list[tuple[str, str]]:
    """Postfix policy attribute syntax: ``name=value`` or ``{ name = value }``."""
    found: list[tuple[str, str]] = []
    rest = value
    while rest.strip():
        rest = rest.lstrip()
        if rest.startswith("{"):
            inner, _, rest = rest[1:].partition("}")
            name, _, val = inner.partition("=")
            found.append((name.strip(), val.strip()))
        else:
            word, _, rest = rest.partition(" ")
            name, _, val = word.partition("=")
            found.append((name, val))
    return found


def test_tlsrpt_attributes_parse_back_to_the_policy(
    world: World, start_daemon: StartDaemon
) -> None:
    """Postfix 3.10 TLSRPT attributes (checklist #172), opt-in per profile (#173)."""
    body = policy("mx1.rpt.test", "*.rpt.test")
    world.publish_sts("rpt.fast.test", body)
    daemon = start_daemon(profiles={"postfix310": {"tlsrpt": True}})
    assert daemon.postmap("rpt.fast.test") == secure(".rpt.test", "mx1.rpt.test")
    value = daemon.postmap("rpt.fast.test", map_name="postfix310")
    attributes = _attributes(value)
    assert attributes[:4] == [
        ("secure", ""),
        ("match", ".rpt.test:mx1.rpt.test"),
        ("servername", "hostname"),
        ("policy_type", "sts"),
    ]
    assert ("policy_domain", "rpt.fast.test") in attributes
    assert [v for n, v in attributes if n == "mx_host_pattern"] == ["mx1.rpt.test", "*.rpt.test"]
    assert [v for n, v in attributes if n == "policy_string"] == body.strip().split("\n")


def test_oversized_reply_falls_back_to_the_answer_without_tlsrpt_attributes(
    world: World, start_daemon: StartDaemon
) -> None:
    """tcp_table replies stay under 4096 bytes (#198); socketmap under 100,000 (#179)."""
    mx = [f"mx{i:04d}.big.test" for i in range(200)]  # about 3.4 KB of match=
    world.publish_sts("bigreply.fast.test", policy(*mx))
    port = free_port()
    daemon = start_daemon(
        server={"tcp_table_listen": [f"127.0.0.1:{port}"], "tcp_table_profile": "rpt"},
        profiles={"rpt": {"tlsrpt": True}},
    )
    short = secure(*sorted(mx))
    assert _postmap_tcp(daemon, port, "bigreply.fast.test") == short
    full = daemon.query("bigreply.fast.test", map_name="rpt")[0]
    assert full.startswith("OK " + short + " policy_type=sts")
    assert len(full) > 4096
