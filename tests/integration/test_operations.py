"""Running it as a service: metrics after known lookups, reload, drain."""

import asyncio
import copy
import re
import signal
import socket
import urllib.request
from collections.abc import Callable

from tests.integration.daemon import Daemon, eventually, free_port
from tests.world import World

StartDaemon = Callable[..., Daemon]
ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.ops.test\nmax_age: 86400\n"
SECURE = "OK secure match=mx.ops.test servername=hostname"


def scrape(port: int) -> dict[str, float]:
    """Samples of a Prometheus text exposition, keyed by name and labels as written."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_count_known_lookups(world: World, start_daemon: StartDaemon) -> None:
    world.publish_sts("metrics.ops.test", ENFORCE)
    port = free_port()
    daemon = start_daemon(metrics={"listen": f"127.0.0.1:{port}"})
    assert daemon.query("metrics.ops.test") == [SECURE]
    assert daemon.query("metrics.ops.test", "metrics.ops.test", "metrics.ops.test") == [SECURE] * 3
    assert daemon.query(".ops.test", "nothing.ops.test") == ["NOTFOUND ", "NOTFOUND "]
    daemon.raw(b"4:junk;", 1)
    m = scrape(port)
    lookups = 'postfix_sts_lookups_total{answer="%s",profile="default",source="%s"}'
    assert m[lookups % ("secure", "resolved")] == 1
    assert m[lookups % ("secure", "cache")] == 3
    assert m[lookups % ("notfound", "key")] == 1
    assert m[lookups % ("notfound", "resolved")] == 1
    assert m['postfix_sts_policy_fetches_total{outcome="ok"}'] == 1
    assert m['postfix_sts_dns_queries_total{outcome="ok",type="TXT"}'] == 1
    assert m['postfix_sts_dns_queries_total{outcome="nxdomain",type="TXT"}'] == 1
    assert m['postfix_sts_cache_entries{kind="sts-enforce"}'] == 1
    assert m['postfix_sts_cache_entries{kind="negative"}'] == 1
    assert m['postfix_sts_protocol_errors_total{protocol="socketmap",reason="bad-terminator"}'] == 1
    assert m['postfix_sts_lookup_duration_seconds_count{source="cache"}'] == 3
    assert any(name.startswith("postfix_sts_build_info{") for name in m)
    assert m["process_resident_memory_bytes"] > 0


def test_metrics_count_a_downgrade_to_mode_none(world: World, start_daemon: StartDaemon) -> None:
    world.publish_sts("optout.ops.test", ENFORCE, policy_id="1")
    port = free_port()
    daemon = start_daemon(metrics={"listen": f"127.0.0.1:{port}"}, sts={"txt_recheck_interval": 1})
    assert daemon.query("optout.ops.test") == [SECURE]
    world.publish_sts(
        "optout.ops.test", "version: STSv1\nmode: none\nmax_age: 86400\n", policy_id="2"
    )
    transitions = 'postfix_sts_policy_transitions_total{kind="enforce-to-none"}'
    assert eventually(lambda: scrape(port).get(transitions) == 1)
    assert "policy transition domain=optout.ops.test kind=enforce-to-none" in daemon.log()
    assert daemon.query("optout.ops.test") == ["NOTFOUND "]


def test_sighup_reload_applies_new_config_without_dropping_a_connection(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("reload.ops.test", ENFORCE)
    daemon = start_daemon()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as held:
        assert _ask(held, "reload.ops.test") == SECURE
        tcp_port = free_port()
        new = copy.deepcopy(daemon.config)
        new["profiles.postfix"] = {"servername": False}
        new.setdefault("server", {})["tcp_table_listen"] = [f"127.0.0.1:{tcp_port}"]
        daemon.write_config(new)
        daemon.send(signal.SIGHUP)
        assert eventually(lambda: "reload: config applied" in daemon.log())
        # the same connection, still open, now answers with the new profile
        assert _ask(held, "reload.ops.test") == "OK secure match=mx.ops.test"
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as tcp:
            tcp.sendall(b"get reload.ops.test\n")
            assert tcp.recv(1000) == b"200 secure match=mx.ops.test servername=hostname\n"


def test_bad_config_on_reload_is_rejected_and_the_old_one_stays(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("reload.ops.test", ENFORCE)
    daemon = start_daemon()
    daemon.config_path.write_text("[dns]\ntimeout = -5\n")
    daemon.send(signal.SIGHUP)
    assert eventually(lambda: "reload rejected, old config kept" in daemon.log())
    assert "[dns] timeout: must be a number greater than 0, got -5" in daemon.log()
    assert daemon.query("reload.ops.test") == [SECURE]


def test_sigterm_drains_an_in_flight_lookup_and_exits_cleanly(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("drain.ops.test", ENFORCE, drip_interval=0.01)  # a fetch of about 0.7 s
    daemon = start_daemon()

    async def query_while_stopping() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"22:postfix drain.ops.test,")
        await writer.drain()
        await asyncio.sleep(0.2)
        daemon.send(signal.SIGTERM)
        reply = await asyncio.wait_for(reader.read(1000), 20)
        writer.close()
        return reply

    reply = asyncio.run(query_while_stopping())
    assert reply == b"%d:%s," % (len(SECURE), SECURE.encode())
    assert daemon.wait() == 0
    assert re.search(r"postfix-sts stopped", daemon.log())


def _ask(sock: socket.socket, key: str) -> str:
    payload = f"postfix {key}".encode()
    sock.sendall(b"%d:%s," % (len(payload), payload))
    data = b""
    while not data.endswith(b","):
        data += sock.recv(1000)
    return data.partition(b":")[2][:-1].decode()
