"""Can this machine host the end-to-end tests? They need root (Postfix's
master, ports 25 and 53), a private mount namespace (CAP_SYS_ADMIN) and
Debian's Postfix.

Unmet needs make the tests skip, with the reason shown in pytest's summary;
set ``POSTFIX_STS_E2E=required`` (e.g. in CI) to make them fail instead.
Missing binaries always fail, like the integration tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.world.procs import WorldError, find_binary

from .postfix import DAEMON_DIRECTORY, in_private_resolv_namespace

REQUIRED_ENV = "POSTFIX_STS_E2E"
#: Binaries the harness runs on top of the world's (package: util-linux, mount, postfix).
BINARIES = ("postfix", "postqueue", "postsuper", "unshare", "mount")


class Unsupported(Exception):
    """The machine cannot run the end-to-end tests (a skip, not a failure)."""


def missing_binaries() -> list[str]:
    missing = []
    for name in BINARIES:
        try:
            find_binary(name)
        except WorldError:
            missing.append(name)
    if not (DAEMON_DIRECTORY / "master").exists():
        missing.append(str(DAEMON_DIRECTORY / "master"))
    return missing


def e2e_required() -> bool:
    return os.environ.get(REQUIRED_ENV, "").lower() in ("required", "1", "yes")


def check_privileges() -> None:
    """Raise :class:`Unsupported` unless we are root and may create a mount
    namespace with a bind mount over /etc/resolv.conf."""
    if os.geteuid() != 0:
        raise Unsupported("the end-to-end tests run Postfix's master and need root")
    if not Path("/etc/resolv.conf").exists():
        raise Unsupported("/etc/resolv.conf does not exist: nothing to bind-mount over")
    with tempfile.NamedTemporaryFile("w", suffix=".resolv.conf") as probe:
        probe.write("nameserver 127.0.53.1\n")
        probe.flush()
        argv = in_private_resolv_namespace(Path(probe.name), ["true"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise Unsupported(
            "cannot bind-mount a resolv.conf in a private mount namespace "
            f"(unshare --mount needs CAP_SYS_ADMIN): {done.stderr.strip()}"
        )


def check_port_free(address: str, port: int, *, udp: bool) -> None:
    """Raise :class:`Unsupported` if ``address:port`` cannot be bound."""
    kinds = [socket.SOCK_STREAM, socket.SOCK_DGRAM] if udp else [socket.SOCK_STREAM]
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((address, port))
            except OSError as exc:
                raise Unsupported(f"cannot bind {address}:{port}: {exc}") from exc


def smtp_port(address: str) -> int:
    """25 if receiving servers can listen there; otherwise (another MTA holds
    ``*:25``) a free port, which Postfix is told through ``smtp_tcp_port``."""
    try:
        check_port_free(address, 25, udp=False)
    except Unsupported:
        with socket.socket() as sock:
            sock.bind((address, 0))
            port: int = sock.getsockname()[1]
            return port
    return 25
