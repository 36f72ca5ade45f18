"""Composition root: the only module that builds concrete objects from a Config.

It wires DNS, HTTPS, cache and service together, starts the socketmap listeners,
and handles SIGTERM/SIGINT (close listeners, cancel background work, close the
cache).
"""

import asyncio
import contextlib
import logging
import os
import random
import signal
import stat
from collections.abc import Callable
from functools import partial
from pathlib import Path

from postfix_sts.cache.hot import PolicyCache
from postfix_sts.cache.sqlite import SqliteStore
from postfix_sts.cache.store import PolicyStore, VolatileStore
from postfix_sts.clock import Clock, SystemClock
from postfix_sts.config import Config, Listener
from postfix_sts.core.cache_rules import Intervals
from postfix_sts.dns_client import DnsClient
from postfix_sts.errors import ConfigError
from postfix_sts.https_fetch import PolicyFetcher, policy_ssl_context
from postfix_sts.servers.socketmap import SocketmapProtocol
from postfix_sts.servers.tcp_table import TcpTableProtocol
from postfix_sts.service import RefresherSettings, StsService

log = logging.getLogger("postfix_sts")


def build_service(config: Config, clock: Clock, *, durable: bool) -> tuple[StsService, PolicyCache]:
    """The service and its cache; ``durable=False`` keeps the cache in memory only."""
    dns_client = DnsClient(config.nameservers, config.dns_timeout)
    try:
        ssl_context = policy_ssl_context(config.ca_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"[sts] ca_file: cannot load {config.ca_file}: {exc}") from None
    fetcher = PolicyFetcher(
        dns_client,
        ssl_context,
        deadline=config.fetch_timeout,
        allow_private_addresses=config.allow_private_addresses,
        port=config.https_port,
    )
    store: PolicyStore = VolatileStore()
    if durable and config.cache_backend == "sqlite":
        store = SqliteStore(config.cache_path)
    cache = PolicyCache(store, config.memory_entries)
    service = StsService(
        dns_client=dns_client,
        fetcher=fetcher,
        cache=cache,
        intervals=Intervals(
            recheck=config.txt_recheck_interval,
            retry=config.fetch_retry_interval,
            negative_min=config.negative_ttl_min,
            negative_max=config.negative_ttl_max,
            backoff_min=config.failure_backoff_min,
            backoff_max=config.failure_backoff_max,
        ),
        clock=clock,
        refresher_settings=RefresherSettings(
            rate=config.refresh_rate,
            idle_limit=config.refresh_idle_limit,
            spread=config.refresh_spread,
        ),
        rng=random.Random(),
    )
    return service, cache


async def serve(config: Config) -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    clock = SystemClock()
    service, cache = build_service(config, clock, durable=True)
    loaded = service.start()
    log.info("cache: %s backend, %d live policies loaded", config.cache_backend, loaded)
    servers = [
        await _listen(
            listener,
            partial(SocketmapProtocol, service, config.idle_timeout, config.profile),
            config,
        )
        for listener in config.listeners
    ]
    tcp_profile = config.profile(config.tcp_table_profile)
    servers += [
        await _listen(
            listener, partial(TcpTableProtocol, service, config.idle_timeout, tcp_profile), config
        )
        for listener in config.tcp_table_listeners
    ]
    refresher = asyncio.get_running_loop().create_task(service.refresher.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "postfix-sts ready: socketmap on %s",
        ", ".join(str(listener) for listener in config.listeners),
    )
    try:
        await stop.wait()
    finally:
        log.info("postfix-sts stopping")
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        for server in servers:
            server.close()
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
        cache.close()
        for listener in (*config.listeners, *config.tcp_table_listeners):
            if listener.path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(listener.path)


async def _listen(
    listener: Listener, factory: Callable[[], asyncio.Protocol], config: Config
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    try:
        if listener.path:
            _remove_stale_socket(Path(listener.path))
            server = await loop.create_unix_server(factory, listener.path)
            os.chmod(listener.path, config.unix_socket_mode)
            return server
        return await loop.create_server(factory, listener.host, listener.port, reuse_address=True)
    except OSError as exc:
        raise ConfigError(f"[server] listen: cannot listen on {listener}: {exc.strerror}") from None


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by an earlier run; refuse to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"[server] listen: {path} exists and is not a socket")
    path.unlink()


def run(config: Config) -> None:
    """Run :func:`serve` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop  # noqa: PLC0415  (optional dependency)
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))
