"""Configuration: a TOML file read into frozen dataclasses, validated at load time.

Every key is documented in docs/configuration.md.  Any problem raises
:class:`ConfigError` whose text is one line naming the key, e.g.
``[dns] timeout: must be a number greater than 0, got -1``.  Unknown keys are
errors too, so a typo never silently falls back to a default.
"""

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from postfix_sts.core.render import Profile
from postfix_sts.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:8461"
CACHE_FILE_NAME = "cache.sqlite3"


@dataclass(frozen=True, slots=True)
class Listener:
    """A socketmap listener: TCP ``host:port`` or a unix socket ``path``."""

    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[Listener, ...] = (Listener("127.0.0.1", 8461),)
    tcp_table_listeners: tuple[Listener, ...] = ()
    tcp_table_profile: str = "default"
    unix_socket_mode: int = 0o660
    idle_timeout: float = 300.0
    drain_timeout: float = 20.0
    metrics_listen: tuple[str, int] | None = None
    nameservers: tuple[tuple[str, int], ...] = ()
    dns_timeout: float = 5.0
    fetch_timeout: float = 15.0
    ca_file: str | None = None
    allow_private_addresses: bool = False
    https_port: int = 443
    txt_recheck_interval: float = 3600.0
    fetch_retry_interval: float = 300.0
    refresh_rate: float = 10.0
    refresh_idle_limit: float = 7 * 86_400.0
    refresh_spread: float = 300.0
    negative_ttl_min: float = 60.0
    negative_ttl_max: float = 3600.0
    failure_backoff_min: float = 60.0
    failure_backoff_max: float = 900.0
    dane_enabled: bool = True
    dane_secure_probe: str = "."
    dane_bogus_probe: str = "dnssec-failed.org"
    dane_probe_interval: float = 300.0
    cache_backend: str = "sqlite"
    cache_path: Path = field(default_factory=lambda: default_state_dir() / CACHE_FILE_NAME)
    memory_entries: int = 200_000
    profiles: Mapping[str, Profile] = field(default_factory=lambda: {"default": Profile()})

    def profile(self, map_name: str) -> Profile:
        """The profile for a socketmap map name; unknown names get ``default``."""
        found = self.profiles.get(map_name)
        return found if found is not None else self.profiles["default"]


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` (systemd StateDirectory=), else the per-user XDG state dir."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "postfix-sts"


def load(path: Path | None) -> Config:
    """Read a config file, or return the embedded defaults when ``path`` is None."""
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(data)


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a Config from parsed TOML; raises ConfigError naming the bad key."""
    root = _Table("", data)
    server = root.table("server")
    dns = root.table("dns")
    sts = root.table("sts")
    cache = root.table("cache")
    profiles = root.table("profiles")
    metrics = root.table("metrics")
    dane = root.table("dane")
    root.finish()
    metrics_text = metrics.string("listen", "")
    defaults = Config()
    backend = cache.choice("backend", ("memory", "sqlite"), defaults.cache_backend)
    path_value = cache.string("path", "")
    config = Config(
        listeners=tuple(
            _listener(server, item) for item in server.string_list("listen", [DEFAULT_LISTEN])
        ),
        tcp_table_listeners=tuple(
            _listener(server, item) for item in server.string_list("tcp_table_listen", [])
        ),
        tcp_table_profile=server.string("tcp_table_profile", defaults.tcp_table_profile),
        unix_socket_mode=_mode(server, server.string("unix_socket_mode", "0660")),
        idle_timeout=server.positive("idle_timeout", defaults.idle_timeout),
        drain_timeout=server.positive("drain_timeout", defaults.drain_timeout),
        metrics_listen=(
            _host_port(metrics, "listen", metrics_text, default_port=None) if metrics_text else None
        ),
        nameservers=tuple(_nameserver(dns, item) for item in dns.string_list("nameservers", [])),
        dns_timeout=dns.positive("timeout", defaults.dns_timeout),
        fetch_timeout=sts.positive("fetch_timeout", defaults.fetch_timeout),
        ca_file=sts.string("ca_file", "") or None,
        allow_private_addresses=sts.boolean("allow_private_addresses", False),
        https_port=sts.port("https_port", defaults.https_port),
        txt_recheck_interval=sts.positive("txt_recheck_interval", defaults.txt_recheck_interval),
        fetch_retry_interval=sts.positive("fetch_retry_interval", defaults.fetch_retry_interval),
        refresh_rate=sts.positive("refresh_rate", defaults.refresh_rate),
        refresh_idle_limit=sts.positive("refresh_idle_limit", defaults.refresh_idle_limit),
        refresh_spread=sts.positive("refresh_spread", defaults.refresh_spread),
        negative_ttl_min=cache.positive("negative_ttl_min", defaults.negative_ttl_min),
        negative_ttl_max=cache.positive("negative_ttl_max", defaults.negative_ttl_max),
        failure_backoff_min=cache.positive("failure_backoff_min", defaults.failure_backoff_min),
        failure_backoff_max=cache.positive("failure_backoff_max", defaults.failure_backoff_max),
        dane_enabled=dane.boolean("enabled", defaults.dane_enabled),
        dane_secure_probe=dane.string("secure_probe", defaults.dane_secure_probe),
        dane_bogus_probe=dane.string("bogus_probe", defaults.dane_bogus_probe),
        dane_probe_interval=dane.positive("probe_interval", defaults.dane_probe_interval),
        cache_backend=backend,
        cache_path=Path(path_value) if path_value else defaults.cache_path,
        memory_entries=cache.positive_int("memory_entries", defaults.memory_entries),
        profiles=_profiles(profiles),
    )
    for table in (server, dns, sts, cache, metrics, dane):
        table.finish()
    if not config.listeners:
        raise ConfigError("[server] listen: at least one listener is required")
    if config.tcp_table_profile not in config.profiles:
        raise ConfigError(
            f"[server] tcp_table_profile: no profile named {config.tcp_table_profile!r}"
        )
    if config.negative_ttl_min > config.negative_ttl_max:
        raise ConfigError("[cache] negative_ttl_min: must not exceed negative_ttl_max")
    if config.failure_backoff_min > config.failure_backoff_max:
        raise ConfigError("[cache] failure_backoff_min: must not exceed failure_backoff_max")
    if not config.dane_secure_probe:
        raise ConfigError('[dane] secure_probe: must name a DNSSEC-signed zone, e.g. "."')
    if config.fetch_timeout >= 90:
        raise ConfigError("[sts] fetch_timeout: must be under 90 s (Postfix gives up after 100 s)")
    return config


def _profiles(table: "_Table") -> dict[str, Profile]:
    result = {"default": Profile()}
    for name in table.names():
        section = table.table(name)
        testing = section.choice("testing", ("notfound", "enforce"), "notfound")
        result[name] = Profile(
            name=name,
            enforce_testing=testing == "enforce",
            servername=section.boolean("servername", True),
            tlsrpt=section.boolean("tlsrpt", False),
        )
        section.finish()
    table.finish()
    return result


def _listener(table: "_Table", text: str) -> Listener:
    if text.startswith("unix:"):
        path = text[5:]
        if not path.startswith("/"):
            raise table.error("listen", f"unix socket path must be absolute, got {text!r}")
        return Listener(path=path)
    host, port = _host_port(table, "listen", text, default_port=None)
    return Listener(host=host, port=port)


def _nameserver(table: "_Table", text: str) -> tuple[str, int]:
    return _host_port(table, "nameservers", text, default_port=53)


def _host_port(table: "_Table", key: str, text: str, default_port: int | None) -> tuple[str, int]:
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise table.error(key, f"expected [IPv6]:port, got {text!r}")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise table.error(key, f"{host!r} is not an IP address (in {text!r})") from None
    if not port_text:
        if default_port is None:
            raise table.error(key, f"missing port in {text!r} (expected host:port)")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise table.error(key, f"bad port {port_text!r} in {text!r}")
    return host, int(port_text)


def _mode(table: "_Table", text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise table.error(
            "unix_socket_mode", f"must be an octal string like '0660', got {text!r}"
        ) from None
    if not 0 <= mode <= 0o777:
        raise table.error("unix_socket_mode", f"must be between 0000 and 0777, got {text!r}")
    return mode


class _Table:
    """Typed, checked access to one TOML table; tracks which keys were used."""

    def __init__(self, name: str, data: Mapping[str, Any]) -> None:
        self._name = name
        self._data = data
        self._used: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        where = f"[{self._name}] {key}" if self._name else key
        return ConfigError(f"{where}: {problem}")

    def names(self) -> list[str]:
        return list(self._data)

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self._data.get(key)

    def table(self, key: str) -> "_Table":
        value = self._get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return _Table(f"{self._name}.{key}" if self._name else key, value)

    def string(self, key: str, default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {value!r}")
        return value

    def string_list(self, key: str, default: list[str]) -> list[str]:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, f"must be a list of strings, got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def positive(self, key: str, default: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.error(key, f"must be a number greater than 0, got {value!r}")
        return float(value)

    def positive_int(self, key: str, default: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(key, f"must be a whole number greater than 0, got {value!r}")
        return value

    def port(self, key: str, default: int) -> int:
        value = self.positive_int(key, default)
        if value > 65535:
            raise self.error(key, f"must be a port number (1-65535), got {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in allowed:
            raise self.error(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    def finish(self) -> None:
        """Reject keys nobody asked for: they are typos or unsupported settings."""
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            raise self.error(unknown[0], "unknown key")
