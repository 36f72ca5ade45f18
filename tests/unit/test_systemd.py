"""postfix_sts.systemd against real sockets: sd_notify(3) datagrams, the watchdog,
and sd_listen_fds(3) socket activation (in a child process, as systemd does it)."""

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postfix_sts import systemd
from postfix_sts.systemd import Notifier, listen_fds_with_names, run_watchdog

REPO_ROOT = Path(__file__).resolve().parents[2]
RECV_TIMEOUT = 5.0


class Receiver:
    """A bound AF_UNIX datagram socket standing in for systemd's notify socket."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.notify_socket, **extra}

    def recv(self) -> bytes:
        self.sock.settimeout(RECV_TIMEOUT)
        return self.sock.recv(4096)

    def fields(self) -> dict[str, str]:
        """The next datagram as KEY -> VALUE, checking systemd's one-field-per-line form."""
        lines = self.recv().decode().split("\n")
        assert all("=" in line for line in lines), lines
        keys = [line.partition("=")[0] for line in lines]
        assert len(set(keys)) == len(keys), f"duplicate fields in {lines}"
        return dict(line.split("=", 1) for line in lines)

    def pending(self) -> list[bytes]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        received: list[bytes] = []
        while True:
            try:
                received.append(self.sock.recv(4096))
            except BlockingIOError:
                return received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A notify socket bound to a path (short: sun_path holds 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="sd-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        yield Receiver(sock, path)
    finally:
        sock.close()
        shutil.rmtree(directory)


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    """A notify socket in the abstract namespace, named ``@...`` as systemd does."""
    name = f"postfix-sts-test/{secrets.token_hex(8)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(b"\0" + name.encode())
        yield Receiver(sock, "@" + name)
    finally:
        sock.close()


# --- Notifier messages ---------------------------------------------------------


def test_ready_sends_ready_and_status(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env())

    notifier.ready("serving socketmap on 127.0.0.1:8461")

    assert b"READY=1\nSTATUS=serving socketmap on 127.0.0.1:8461" == receiver.recv()


def test_ready_without_status_sends_only_ready(receiver: Receiver) -> None:
    Notifier.from_environ(receiver.env()).ready()

    assert b"READY=1" == receiver.recv()


def test_status_alone(receiver: Receiver) -> None:
    Notifier.from_environ(receiver.env()).status("12 policies cached")

    assert b"STATUS=12 policies cached" == receiver.recv()


def test_status_text_stays_on_one_line(receiver: Receiver) -> None:
    """A newline in the text would start a new field that systemd would interpret."""
    Notifier.from_environ(receiver.env()).status("reload failed:\nREADY=1")

    assert {"STATUS": "reload failed: READY=1"} == receiver.fields()


def test_stopping(receiver: Receiver) -> None:
    Notifier.from_environ(receiver.env()).stopping()

    assert b"STOPPING=1" == receiver.recv()


def test_stopping_with_status(receiver: Receiver) -> None:
    Notifier.from_environ(receiver.env()).stopping("draining 3 connections")

    assert {"STOPPING": "1", "STATUS": "draining 3 connections"} == receiver.fields()


def test_watchdog_ping(receiver: Receiver) -> None:
    Notifier.from_environ(receiver.env()).watchdog()

    assert b"WATCHDOG=1" == receiver.recv()


def test_reloading_carries_the_monotonic_clock(receiver: Receiver) -> None:
    """Type=notify-reload rejects RELOADING=1 without a current MONOTONIC_USEC."""
    notifier = Notifier.from_environ(receiver.env())
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000

    notifier.reloading("reloading /etc/postfix-sts/postfix-sts.toml")

    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = receiver.fields()
    assert ["RELOADING", "MONOTONIC_USEC", "STATUS"] == list(fields)
    assert "1" == fields["RELOADING"]
    assert before <= int(fields["MONOTONIC_USEC"]) <= after
    assert "reloading /etc/postfix-sts/postfix-sts.toml" == fields["STATUS"]


def test_reload_sequence_ends_with_ready(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env())

    notifier.reloading()
    notifier.ready("config reloaded")

    assert "1" == receiver.fields()["RELOADING"]
    assert {"READY": "1", "STATUS": "config reloaded"} == receiver.fields()


def test_abstract_notify_socket(abstract_receiver: Receiver) -> None:
    notifier = Notifier.from_environ(abstract_receiver.env())

    notifier.ready("abstract")
    notifier.watchdog()

    assert b"READY=1\nSTATUS=abstract" == abstract_receiver.recv()
    assert b"WATCHDOG=1" == abstract_receiver.recv()


def test_from_environ_reads_os_environ(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.notify_socket)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))

    notifier = Notifier.from_environ()
    notifier.ready()

    assert notifier.enabled
    assert 2.0 == notifier.watchdog_interval()
    assert b"READY=1" == receiver.recv()


def test_notify_reports_whether_it_sent(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env())

    assert notifier.notify("EXTEND_TIMEOUT_USEC=5000000")
    assert not notifier.notify()
    assert b"EXTEND_TIMEOUT_USEC=5000000" == receiver.recv()


# --- no NOTIFY_SOCKET, or a broken one: no-op, never raises -----------------------


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier.from_environ()

    notifier.ready("x")
    notifier.reloading()
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()

    assert not notifier.enabled
    assert not notifier.notify("READY=1")
    assert notifier.watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "@", "relative/path", "vsock:2:1234"])
def test_unusable_notify_socket_disables_notifications(value: str) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": value, "WATCHDOG_USEC": "1000000"})

    assert not notifier.enabled
    assert notifier.watchdog_interval() is None


def test_send_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    directory = tempfile.mkdtemp(prefix="sd-")
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": os.path.join(directory, "nobody")})
        with caplog.at_level(logging.DEBUG, logger="postfix_sts.systemd"):
            notifier.ready("x")
            notifier.stopping()
            sent = notifier.notify("WATCHDOG=1")
    finally:
        shutil.rmtree(directory)

    assert notifier.enabled
    assert not sent
    assert 3 == sum("failed" in record.getMessage() for record in caplog.records)
    assert all(logging.DEBUG == record.levelno for record in caplog.records)


def test_send_to_a_stream_socket_does_not_raise() -> None:
    """NOTIFY_SOCKET naming something that is not a datagram socket (EPROTOTYPE)."""
    directory = tempfile.mkdtemp(prefix="sd-")
    path = os.path.join(directory, "stream")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
            stream.bind(path)
            stream.listen()
            assert not Notifier.from_environ({"NOTIFY_SOCKET": path}).notify("READY=1")
    finally:
        shutil.rmtree(directory)


# --- watchdog interval ------------------------------------------------------------


@pytest.mark.parametrize(
    ("usec", "expected"),
    [("30000000", 15.0), ("1000000", 0.5), ("1", 0.0000005)],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    receiver: Receiver, usec: str, expected: float
) -> None:
    notifier = Notifier.from_environ(receiver.env(WATCHDOG_USEC=usec))

    assert expected == notifier.watchdog_interval()


def test_watchdog_interval_for_this_pid(receiver: Receiver) -> None:
    env = receiver.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid()))

    assert 15.0 == Notifier.from_environ(env).watchdog_interval()


def test_watchdog_meant_for_another_pid_is_ignored(receiver: Receiver) -> None:
    env = receiver.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=str(os.getpid() + 1))

    assert Notifier.from_environ(env).watchdog_interval() is None


def test_watchdog_pid_compared_with_the_given_pid(receiver: Receiver) -> None:
    env = receiver.env(WATCHDOG_USEC="30000000", WATCHDOG_PID="4242")

    assert 15.0 == Notifier.from_environ(env, pid=4242).watchdog_interval()
    assert Notifier.from_environ(env, pid=4243).watchdog_interval() is None


@pytest.mark.parametrize("usec", ["", "0", "-1", "abc", "1.5", " 10", "٣"])
def test_invalid_watchdog_usec_means_no_watchdog(receiver: Receiver, usec: str) -> None:
    assert Notifier.from_environ(receiver.env(WATCHDOG_USEC=usec)).watchdog_interval() is None


@pytest.mark.parametrize("watchdog_pid", ["abc", "0", "-1"])
def test_invalid_watchdog_pid_means_no_watchdog(receiver: Receiver, watchdog_pid: str) -> None:
    env = receiver.env(WATCHDOG_USEC="30000000", WATCHDOG_PID=watchdog_pid)

    assert Notifier.from_environ(env).watchdog_interval() is None


# --- run_watchdog -----------------------------------------------------------------


def test_run_watchdog_pings_while_healthy(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env(WATCHDOG_USEC="20000"))  # ping every 10 ms

    async def main() -> None:
        task = asyncio.create_task(run_watchdog(notifier, lambda: True))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())

    pings = receiver.pending()
    assert len(pings) >= 3
    assert {b"WATCHDOG=1"} == set(pings)


def test_run_watchdog_skips_pings_while_unhealthy(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env(WATCHDOG_USEC="20000"))
    healthy = False
    checks = 0

    def is_healthy() -> bool:
        nonlocal checks
        checks += 1
        return healthy

    async def main() -> tuple[list[bytes], list[bytes]]:
        task = asyncio.create_task(run_watchdog(notifier, is_healthy))
        await asyncio.sleep(0.1)
        while_unhealthy = receiver.pending()
        nonlocal healthy
        healthy = True
        await asyncio.sleep(0.1)
        task.cancel()
        return while_unhealthy, receiver.pending()

    while_unhealthy, after_recovery = asyncio.run(main())

    assert checks >= 3
    assert [] == while_unhealthy
    assert after_recovery
    assert {b"WATCHDOG=1"} == set(after_recovery)


def test_run_watchdog_treats_a_raising_check_as_unhealthy(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ(receiver.env(WATCHDOG_USEC="20000"))

    def is_healthy() -> bool:
        raise RuntimeError("probe broke")

    async def main() -> bool:
        task = asyncio.create_task(run_watchdog(notifier, is_healthy))
        await asyncio.sleep(0.05)
        alive = not task.done()
        task.cancel()
        return alive

    with caplog.at_level(logging.WARNING, logger="postfix_sts.systemd"):
        assert asyncio.run(main())

    assert [] == receiver.pending()
    assert any("probe broke" in (record.exc_text or "") for record in caplog.records)


def test_run_watchdog_returns_at_once_without_a_watchdog(receiver: Receiver) -> None:
    calls: list[str] = []

    def is_healthy() -> bool:
        calls.append("checked")
        return True

    asyncio.run(
        asyncio.wait_for(run_watchdog(Notifier.from_environ(receiver.env()), is_healthy), 1)
    )
    asyncio.run(asyncio.wait_for(run_watchdog(Notifier.from_environ({}), is_healthy), 1))
    no_socket = Notifier.from_environ({"WATCHDOG_USEC": "20000"})
    asyncio.run(asyncio.wait_for(run_watchdog(no_socket, is_healthy, interval=0.01), 1))

    assert [] == calls
    assert [] == receiver.pending()


def test_run_watchdog_explicit_interval(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env())  # no WATCHDOG_USEC

    async def main() -> None:
        task = asyncio.create_task(run_watchdog(notifier, lambda: True, interval=0.01))
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(main())

    assert len(receiver.pending()) >= 3


def test_run_watchdog_rejects_a_non_positive_interval(receiver: Receiver) -> None:
    notifier = Notifier.from_environ(receiver.env())

    with pytest.raises(ValueError, match="positive"):
        asyncio.run(run_watchdog(notifier, lambda: True, interval=0))


def test_a_stalled_event_loop_stops_the_pings(receiver: Receiver) -> None:
    """What systemd's watchdog catches: a blocked loop cannot run the ping task."""
    notifier = Notifier.from_environ(receiver.env(WATCHDOG_USEC="20000"))

    async def main() -> list[bytes]:
        task = asyncio.create_task(run_watchdog(notifier, lambda: True))
        await asyncio.sleep(0.05)
        receiver.pending()
        time.sleep(0.2)  # noqa: ASYNC251 (deliberately blocks the loop, as a runaway call would)
        during_stall = receiver.pending()
        task.cancel()
        return during_stall

    assert [] == asyncio.run(main())


# --- socket activation ------------------------------------------------------------

CHILD = """
import os, sys
from postfix_sts.systemd import listen_fds_with_names
passed = listen_fds_with_names()
leaked = [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ]
for name, sock in passed:
    conn, _ = sock.accept()
    with conn:
        report = [name, str(sock.fileno()), sock.family.name, sock.type.name,
                  str(os.get_inheritable(sock.fileno())), ",".join(leaked) or "-"]
        conn.sendall(" ".join(report).encode())
sys.exit(0 if passed else 3)
"""


def _spawn_activated(
    sockets: list[socket.socket], names: str | None, *, listen_pid: str = "$$"
) -> int:
    """Start a child as systemd would: sockets at fd 3, 4, ..., LISTEN_* in its env.

    A shell sets LISTEN_PID to its own pid and execs Python, keeping that pid.
    """
    high = [fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, 100) for sock in sockets]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["LISTEN_FDS"] = str(len(sockets))
    if names is not None:
        env["LISTEN_FDNAMES"] = names
    shell = f'LISTEN_PID={listen_pid}; export LISTEN_PID; exec "$0" -c "$1"'
    try:
        return os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", shell, sys.executable, CHILD],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, fd, systemd.LISTEN_FDS_START + index)
                for index, fd in enumerate(high)
            ],
        )
    finally:
        for fd in high:
            os.close(fd)


def _exit_status(pid: int) -> int:
    deadline = time.monotonic() + RECV_TIMEOUT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("activated child did not exit")


def _ask(family: socket.AddressFamily, address: str | tuple[str, int]) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(RECV_TIMEOUT)
        client.connect(address)
        return client.recv(4096).decode()


@pytest.mark.parametrize(
    ("names", "expected_names"),
    [
        ("socketmap:socketmap-unix", ["socketmap", "socketmap-unix"]),
        (None, ["unknown", "unknown"]),
        ("only-one", ["unknown", "unknown"]),
    ],
)
def test_listen_fds_in_an_activated_process(names: str | None, expected_names: list[str]) -> None:
    directory = tempfile.mkdtemp(prefix="sd-")
    unix_path = os.path.join(directory, "socketmap")
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        unix.bind(unix_path)
        unix.listen()
        tcp_address = tcp.getsockname()
        pid = _spawn_activated([tcp, unix], names)
        # Only the child holds the listeners now: if it fails, connecting fails.
        tcp.close()
        unix.close()
        tcp_report = _ask(socket.AF_INET, tcp_address).split()
        unix_report = _ask(socket.AF_UNIX, unix_path).split()
        status = _exit_status(pid)
    finally:
        tcp.close()
        unix.close()
        shutil.rmtree(directory)

    assert 0 == status
    assert [expected_names[0], "3", "AF_INET", "SOCK_STREAM", "False", "-"] == tcp_report
    assert [expected_names[1], "4", "AF_UNIX", "SOCK_STREAM", "False", "-"] == unix_report


def test_listen_fds_meant_for_another_process_are_ignored() -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    try:
        pid = _spawn_activated([tcp], "socketmap", listen_pid="1")
    finally:
        tcp.close()

    assert 3 == _exit_status(pid)  # the child found no sockets


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LISTEN_FDS": "1"},
        {"LISTEN_PID": "4242"},
        {"LISTEN_PID": "4243", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "socketmap"},
        {"LISTEN_PID": "4242", "LISTEN_FDS": "0"},
        {"LISTEN_PID": "4242", "LISTEN_FDS": "x"},
        {"LISTEN_PID": "x", "LISTEN_FDS": "1"},
    ],
)
def test_listen_fds_without_activation_is_empty(env: dict[str, str]) -> None:
    environ = dict(env)

    assert [] == listen_fds_with_names(environ, pid=4242)
    assert {} == environ  # the LISTEN_* variables are consumed either way


def test_listen_fds_can_keep_the_environment() -> None:
    environ = {"LISTEN_PID": "4243", "LISTEN_FDS": "1", "OTHER": "x"}

    assert [] == listen_fds_with_names(environ, pid=4242, unset_environment=False)
    assert {"LISTEN_PID": "4243", "LISTEN_FDS": "1", "OTHER": "x"} == environ
