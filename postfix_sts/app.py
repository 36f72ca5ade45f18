"""Composition root and process lifecycle: the only module that builds concrete
objects from a :class:`Config`.

:class:`Daemon` runs the listeners and the background refresher and handles:

* SIGHUP: reload the config file.  A bad file is rejected with one log line and
  the old config stays.  Listeners that did not change stay up, and open client
  connections are never dropped.  DNS, HTTPS, timing and profile settings apply at
  once.  The cache backend, its path and size need a restart (a warning says so).
* SIGTERM/SIGINT: stop accepting connections, let in-flight lookups finish (at
  most ``drain_timeout`` seconds), close connections, stop background work,
  close the cache (every write is already committed), exit 0.
* systemd: READY/RELOADING/STOPPING notifications, watchdog pings, and sockets
  passed by socket activation (postfix_sts.systemd).
"""

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import socket
import stat
import weakref
from collections.abc import Callable
from pathlib import Path

from postfix_sts import config as config_module
from postfix_sts import systemd
from postfix_sts.cache.hot import PolicyCache
from postfix_sts.cache.sqlite import SqliteStore
from postfix_sts.cache.store import PolicyStore, VolatileStore
from postfix_sts.clock import Clock, SystemClock
from postfix_sts.config import Config, Listener
from postfix_sts.core.cache_rules import Intervals
from postfix_sts.core.render import Profile
from postfix_sts.dane_resolver import DaneResolver, ResolverValidation
from postfix_sts.dns_client import DnsClient
from postfix_sts.errors import ConfigError
from postfix_sts.https_fetch import PolicyFetcher, policy_ssl_context
from postfix_sts.metrics import Metrics
from postfix_sts.servers.pipeline import PipelinedProtocol
from postfix_sts.servers.socketmap import SocketmapProtocol
from postfix_sts.servers.tcp_table import TcpTableProtocol
from postfix_sts.service import PolicyService, RefresherSettings

log = logging.getLogger("postfix_sts")

#: What a listener serves: ("socketmap" | "tcp_table", where).
ListenerKey = tuple[str, Listener]


def build_resolution(
    config: Config, metrics: Metrics
) -> tuple[DnsClient, PolicyFetcher, Intervals, RefresherSettings]:
    """The reloadable parts of the service, from the config."""
    dns_client = DnsClient(config.nameservers, config.dns_timeout, metrics)
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
    intervals = Intervals(
        recheck=config.txt_recheck_interval,
        retry=config.fetch_retry_interval,
        negative_min=config.negative_ttl_min,
        negative_max=config.negative_ttl_max,
        backoff_min=config.failure_backoff_min,
        backoff_max=config.failure_backoff_max,
    )
    refresher = RefresherSettings(
        rate=config.refresh_rate,
        idle_limit=config.refresh_idle_limit,
        spread=config.refresh_spread,
    )
    return dns_client, fetcher, intervals, refresher


def build_service(
    config: Config, clock: Clock, metrics: Metrics, *, durable: bool
) -> tuple[PolicyService, PolicyCache]:
    """The service and its cache; ``durable=False`` keeps the cache in memory only."""
    dns_client, fetcher, intervals, refresher = build_resolution(config, metrics)
    store: PolicyStore = VolatileStore()
    if durable and config.cache_backend == "sqlite":
        store = SqliteStore(config.cache_path)
    cache = PolicyCache(
        store,
        config.memory_entries,
        on_evict=metrics.eviction,
        on_backend_error=metrics.backend_error,
    )
    metrics.watch_cache(cache.counts)
    dane: DaneResolver | None = None
    validation: ResolverValidation | None = None
    if config.dane_enabled:
        dane = DaneResolver(dns_client)
        validation = ResolverValidation(
            dns_client,
            metrics,
            secure_probe=config.dane_secure_probe,
            bogus_probe=config.dane_bogus_probe,
            interval=config.dane_probe_interval,
        )
    service = PolicyService(
        dns_client=dns_client,
        fetcher=fetcher,
        cache=cache,
        intervals=intervals,
        clock=clock,
        refresher_settings=refresher,
        rng=random.Random(),
        metrics=metrics,
        dane=dane,
        validation=validation,
    )
    return service, cache


class Daemon:
    """The running daemon; see the module docstring."""

    def __init__(self, config: Config, config_path: Path | None) -> None:
        self.config = config
        self._config_path = config_path
        self._clock = SystemClock()
        self._metrics = Metrics(config.cache_backend)
        self.service, self._cache = build_service(config, self._clock, self._metrics, durable=True)
        self._servers: dict[ListenerKey, asyncio.Server] = {}
        self._inherited: list[asyncio.Server] = []
        self._connections: weakref.WeakSet[PipelinedProtocol] = weakref.WeakSet()
        self._stop_metrics: Callable[[], None] | None = None
        self._notifier = systemd.Notifier.from_environ()
        self._stopping = asyncio.Event()

    # --- protocol factories: they read the current config on every connection ----------

    def _socketmap(self) -> SocketmapProtocol:
        protocol = SocketmapProtocol(
            self.service, self.config.idle_timeout, self._metrics, self._profile_for
        )
        self._connections.add(protocol)
        return protocol

    def _tcp_table(self) -> TcpTableProtocol:
        protocol = TcpTableProtocol(
            self.service, self.config.idle_timeout, self._metrics, self._tcp_profile
        )
        self._connections.add(protocol)
        return protocol

    def _profile_for(self, map_name: str) -> Profile:
        return self.config.profile(map_name)

    def _tcp_profile(self) -> Profile:
        return self.config.profile(self.config.tcp_table_profile)

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loaded = self.service.start()
        log.info("cache: %s backend, %d live policies loaded", self.config.cache_backend, loaded)
        inherited = systemd.listen_fds_with_names()
        if inherited:
            for name, sock in inherited:
                self._inherited.append(await _adopt(sock, self._factory(name)))
            where = ", ".join(str(sock.getsockname()) for _name, sock in inherited)
            log.info("socket activation: serving on %s; [server] listen is ignored", where)
        else:
            await self._apply_listeners(self.config)
            where = ", ".join(f"{kind} {listener}" for kind, listener in self._servers)
        self._stop_metrics = self._start_metrics(self.config)
        refresher = loop.create_task(self.service.refresher.run())
        validation = loop.create_task(self.service.run_validation())
        watchdog = loop.create_task(systemd.run_watchdog(self._notifier, lambda: True))
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload()))
        log.info("postfix-sts ready: %s", where)
        self._notifier.ready(f"serving {where}; {loaded} policies cached")
        try:
            await self._stopping.wait()
        finally:
            self._notifier.stopping()
            log.info("postfix-sts stopping: draining connections")
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            await self._drain()
            for task in (refresher, validation, watchdog):
                task.cancel()
            await asyncio.gather(refresher, validation, watchdog, return_exceptions=True)
            if self._stop_metrics is not None:
                self._stop_metrics()
            self._cache.close()
            log.info("postfix-sts stopped")

    def _factory(self, kind: str) -> Callable[[], asyncio.Protocol]:
        return self._tcp_table if kind == "tcp_table" else self._socketmap

    async def _drain(self) -> None:
        """Stop accepting; wait for in-flight lookups; close the connections."""
        for server in [*self._servers.values(), *self._inherited]:
            server.close()
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout
        while any(c.busy for c in self._connections):
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("drain: lookups still pending after %.0f s", self.config.drain_timeout)
                break
            await asyncio.sleep(0.05)
        for connection in list(self._connections):
            connection.close()
        for listener in (*self.config.listeners, *self.config.tcp_table_listeners):
            if listener.path and not self._inherited:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(listener.path)

    async def reload(self) -> None:
        """SIGHUP: apply a new config, or keep the old one if the new one is bad."""
        self._notifier.reloading("reloading config")
        try:
            new = config_module.load(self._config_path)
            resolution = build_resolution(new, self._metrics)
            metrics_changed = new.metrics_listen != self.config.metrics_listen
            new_metrics = self._start_metrics(new) if metrics_changed else None
            if not self._inherited:
                try:
                    await self._apply_listeners(new)
                except ConfigError:
                    if new_metrics is not None:
                        new_metrics()
                    raise
        except ConfigError as exc:
            log.error("reload rejected, old config kept: %s", exc.detail)
            self._notifier.ready(f"reload failed, old config kept: {exc.detail}")
            return
        restart_only = [
            name
            for name in (
                "cache_backend",
                "cache_path",
                "memory_entries",
                "dane_enabled",
                "dane_secure_probe",
                "dane_bogus_probe",
                "dane_probe_interval",
            )
            if getattr(new, name) != getattr(self.config, name)
        ]
        if restart_only:
            log.warning("reload: %s change only on restart", ", ".join(restart_only))
            new = dataclasses.replace(
                new, **{name: getattr(self.config, name) for name in restart_only}
            )
        old, self.config = self.config, new
        self.service.reconfigure(*resolution)
        if old.profiles != new.profiles:
            self._cache.forget_rendered_answers()
        if metrics_changed:
            if self._stop_metrics is not None:
                self._stop_metrics()
            self._stop_metrics = new_metrics
        log.info("reload: config applied from %s", self._config_path)
        self._notifier.ready("config reloaded")

    async def _apply_listeners(self, config: Config) -> None:
        """Open the listeners ``config`` wants and close the others; keep unchanged ones.

        New listeners are opened first: if one fails, nothing is closed and the
        error propagates (a reload then keeps the old config).
        """
        wanted: list[ListenerKey] = [("socketmap", item) for item in config.listeners]
        wanted += [("tcp_table", item) for item in config.tcp_table_listeners]
        opened: dict[ListenerKey, asyncio.Server] = {}
        try:
            for key in wanted:
                if key not in self._servers and key not in opened:
                    opened[key] = await _listen(key[1], self._factory(key[0]), config)
        except ConfigError:
            for server in opened.values():
                server.close()
            raise
        for key in [k for k in self._servers if k not in wanted]:
            self._servers.pop(key).close()  # open connections on it are not dropped
            log.info("listener %s %s closed", *key)
        self._servers.update(opened)

    def _start_metrics(self, config: Config) -> Callable[[], None] | None:
        """Start the metrics listener ``config`` wants; returns its stop function."""
        if config.metrics_listen is None:
            return None
        host, port = config.metrics_listen
        try:
            stop = self._metrics.serve(host, port)
        except OSError as exc:
            raise ConfigError(
                f"[metrics] listen: cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        log.info("metrics on http://%s:%d/metrics", host, port)
        return stop


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


async def _adopt(sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    if sock.family == socket.AF_UNIX:
        return await loop.create_unix_server(factory, sock=sock)
    return await loop.create_server(factory, sock=sock)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by an earlier run; refuse to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"[server] listen: {path} exists and is not a socket")
    path.unlink()


def run(config: Config, config_path: Path | None) -> None:
    """Run the daemon on uvloop when it is installed, else on asyncio's loop."""

    async def main() -> None:
        await Daemon(config, config_path).run()

    try:
        import uvloop  # noqa: PLC0415  (optional dependency)
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
