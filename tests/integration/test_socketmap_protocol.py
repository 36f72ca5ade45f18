"""The socketmap server against hostile or unusual peers (Postfix socketmap_table(5))."""

import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.daemon import Daemon
from tests.world import World

StartDaemon = Callable[..., Daemon]
ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.proto.test\nmax_age: 86400\n"
SECURE = "OK secure match=mx.proto.test servername=hostname"


def test_pipelined_requests_are_answered_in_order_and_bad_ones_do_not_drop_the_connection(
    world: World, start_daemon: StartDaemon
) -> None:
    """Checklist #181, #186: one bad request gets one answer; the rest go on."""
    world.publish_sts("proto.test", ENFORCE)
    daemon = start_daemon()
    requests = b"".join(
        b"%d:%s," % (len(p), p)
        for p in (
            b"postfix proto.test",
            b"postfix a..b.test",
            b"nokey",
            b"postfix \xff\xfe",
            b"postfix .proto.test",
            b"postfix proto.test",
        )
    )
    replies = daemon.raw(requests, 6)
    assert replies == [
        SECURE.encode(),
        b"NOTFOUND ",
        b"PERM malformed socketmap request: expected '<map name> <key>'",
        b"NOTFOUND ",
        b"NOTFOUND ",
        SECURE.encode(),
    ]


def test_unknown_map_name_uses_the_default_profile(world: World, start_daemon: StartDaemon) -> None:
    world.publish_sts("proto.test", ENFORCE)
    daemon = start_daemon()
    assert daemon.query("proto.test", map_name="whatever") == [SECURE]


def test_request_split_into_single_bytes_is_reassembled(
    world: World, start_daemon: StartDaemon
) -> None:
    """Checklist #182."""
    world.publish_sts("proto.test", ENFORCE)
    daemon = start_daemon()
    request = b"18:postfix proto.test,"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in request:
            sock.sendall(bytes([byte]))
            time.sleep(0.002)
        reply = sock.recv(1000)
    assert reply == b"%d:%s," % (len(SECURE), SECURE.encode())


def test_malformed_framing_gets_perm_and_the_connection_is_closed(
    start_daemon: StartDaemon,
) -> None:
    """Checklist #183."""
    daemon = start_daemon()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"5:hello;")
        reply = sock.recv(1000)
        length, _, payload = reply.partition(b":")
        assert payload.startswith(b"PERM bad-terminator")
        assert int(length) == len(payload) - 1
        assert sock.recv(1000) == b""  # closed by the daemon


def test_request_over_10000_bytes_is_refused_before_it_is_read(start_daemon: StartDaemon) -> None:
    """Checklist #180, #185."""
    daemon = start_daemon()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"10001:postfix ")
        reply = sock.recv(1000)
        assert b"PERM too-long" in reply
        assert sock.recv(1000) == b""


def test_idle_connection_is_closed_by_the_daemon(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(server={"idle_timeout": 1})
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1000) == b""
        assert 0.5 < time.monotonic() - started < 5


def test_daemon_survives_a_burst_of_garbage_connections(
    world: World, start_daemon: StartDaemon
) -> None:
    world.publish_sts("proto.test", ENFORCE)
    daemon = start_daemon()
    for garbage in (b"\x00" * 50, b"99999999999999:", b"-1:x,", b"3:abc", os.urandom(300)):
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1000)
    assert daemon.query("proto.test") == [SECURE]


def test_unix_socket_listener_with_mode_answers_postmap(
    world: World, start_daemon: StartDaemon, tmp_path: Path
) -> None:
    world.publish_sts("proto.test", ENFORCE)
    path = tmp_path / "sts.sock"
    daemon = start_daemon(server={"listen": [f"unix:{path}"], "unix_socket_mode": "0600"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    result = subprocess.run(
        [
            "postmap",
            "-c",
            str(daemon.postfix_dir),
            "-q",
            "proto.test",
            f"socketmap:unix:{path}:postfix",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.stdout.strip() == "secure match=mx.proto.test servername=hostname"
