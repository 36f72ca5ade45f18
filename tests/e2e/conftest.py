"""Fixtures for the end-to-end delivery tests (see test_delivery.py).

``world`` and ``start_daemon`` are the integration tests' fixtures, imported
so there is one copy of their code (pytest registers them for tests/e2e too;
in a whole-suite run the session ``world`` is therefore built twice).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import start_daemon, world
from tests.integration.daemon import Daemon, free_port
from tests.world import World
from tests.world.procs import wait_for

from . import environment
from .mailworld import MX_NETWORK, STATIC_TLS_POLICY, MailWorld
from .postfix import SendingPostfix
from .receiver import ReceiverPool
from .resolver import RESOLVER_ADDRESS, Port53Resolver

__all__ = [
    "daemon_port",
    "e2e_smtp_port",
    "mail",
    "port53_resolver",
    "receivers",
    "sending_postfix",
    "start_daemon",
    "sts_daemon",
    "world",
]


@pytest.fixture(scope="session")
def e2e_smtp_port() -> int:
    """Checks the machine can host the tests; returns the receiving servers' port."""
    missing = environment.missing_binaries()
    if missing:
        pytest.fail(
            "end-to-end tests need these binaries (CI installs them): " + ", ".join(missing),
            pytrace=False,
        )
    try:
        environment.check_privileges()
        environment.check_port_free(RESOLVER_ADDRESS, 53, udp=True)
    except environment.Unsupported as exc:
        if environment.e2e_required():
            pytest.fail(f"end-to-end tests cannot run: {exc}", pytrace=False)
        pytest.skip(f"end-to-end tests cannot run here: {exc}")
    return environment.smtp_port(f"{MX_NETWORK}1")


@pytest.fixture(scope="session")
def port53_resolver(
    e2e_smtp_port: int, world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Port53Resolver]:
    """A validating unbound on 127.0.53.1:53 serving the world's zones."""
    resolver = Port53Resolver(tmp_path_factory.mktemp("resolver53"), world.dns)
    try:
        resolver.start()
        yield resolver
    finally:
        resolver.close()


@pytest.fixture(scope="session")
def daemon_port() -> int:
    """The port every test's postfix-sts daemon also listens on: the one the
    (session-long) sending Postfix's smtp_tls_policy_maps points at."""
    return free_port()


@pytest.fixture(scope="session")
def sending_postfix(
    e2e_smtp_port: int,
    world: World,
    port53_resolver: Port53Resolver,
    daemon_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SendingPostfix]:
    # Not under pytest's temp dir: Postfix's unprivileged daemons must be able
    # to reach it, and pytest makes its directories 0700.
    directory = Path(tempfile.mkdtemp(prefix="postfix-sts-e2e-"))
    directory.chmod(0o755)
    postfix = SendingPostfix(
        directory,
        resolv_conf=port53_resolver.resolv_conf(),
        ca_file=world.ca_file,
        tls_policy_maps=[f"socketmap:inet:127.0.0.1:{daemon_port}:postfix"],
        static_tls_policy=STATIC_TLS_POLICY,
        smtp_port=e2e_smtp_port,
    )
    try:
        postfix.start()
        yield postfix
    finally:
        postfix.close()
        if postfix.maillog.exists():  # kept for post-mortems
            shutil.copyfile(postfix.maillog, tmp_path_factory.mktemp("postfix") / "maillog")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def receivers() -> Iterator[ReceiverPool]:
    pool = ReceiverPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def mail(
    world: World,
    port53_resolver: Port53Resolver,
    sending_postfix: SendingPostfix,
    receivers: ReceiverPool,
) -> Iterator[MailWorld]:
    """The test's mail topology; its MX hosts and queued mail go afterwards."""
    try:
        yield MailWorld(world, port53_resolver, sending_postfix, receivers)
    finally:
        receivers.stop_all()
        sending_postfix.delete_all_mail()


@pytest.fixture
def sts_daemon(start_daemon: Callable[..., Daemon], daemon_port: int) -> Daemon:
    """postfix-sts pointed at the world, also listening where Postfix asks."""
    daemon = start_daemon(server={"listen": [f"127.0.0.1:{daemon_port}"]})

    def listening() -> bool | None:
        with socket.create_connection(("127.0.0.1", daemon_port), timeout=1):
            return True

    wait_for(listening, timeout=10, what=f"postfix-sts to listen on 127.0.0.1:{daemon_port}")
    return daemon
