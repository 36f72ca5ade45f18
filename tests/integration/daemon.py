"""Runs the real daemon (``python -m postfix_sts serve``) as a subprocess for tests.

The daemon gets a config file written here: the world's unbound as its resolver,
the world's CA, private addresses allowed (everything is on loopback), and the
HTTPS port of the world's policy server.  Queries go through Postfix's own client
(``postmap -q``) or a raw netstring client.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.world import World

START_TIMEOUT = 15.0
ANSWER_TIMEOUT = 30.0


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``check`` every 0.1 s until it is true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def world_config(
    world: "World", cache_path: Path, **sections: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """A daemon config pointed at the test world, with ``sections`` merged over it.

    ``profiles={"name": {...}}`` becomes ``[profiles.name]`` tables.
    """
    host, port = world.resolver
    config: dict[str, dict[str, Any]] = {
        "dns": {"nameservers": [f"{host}:{port}"], "timeout": 2.0},
        "sts": {
            "ca_file": str(world.ca_file),
            "allow_private_addresses": True,
            "https_port": world.https.port,
            "fetch_timeout": 3.0,
        },
        "cache": {"backend": "sqlite", "path": str(cache_path)},
        "dane": {"secure_probe": "test.", "bogus_probe": "bogus."},
    }
    for section, values in sections.items():
        if section == "profiles":
            for name, profile in values.items():
                config[f"profiles.{name}"] = profile
        else:
            config.setdefault(section, {}).update(values)
    return config


def run_cli(*args: str) -> "subprocess.CompletedProcess[str]":
    """``python -m postfix_sts ARGS`` as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "postfix_sts", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def render_toml(config: Mapping[str, Mapping[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


class Daemon:
    """One postfix-sts process with its own config, cache file and log."""

    def __init__(self, directory: Path, config: Mapping[str, Mapping[str, Any]]) -> None:
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "postfix-sts.toml"
        self.write_config(config)
        self.log_path = directory / "daemon.log"
        self.postfix_dir = directory / "postfix"
        self.postfix_dir.mkdir(exist_ok=True)
        (self.postfix_dir / "main.cf").write_text("compatibility_level = 3.6\n")
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self, config: Mapping[str, Mapping[str, Any]]) -> None:
        """(Re)write the config file; the daemon's own TCP listener is always first."""
        self.config = {section: dict(values) for section, values in config.items()}
        merged = {section: dict(values) for section, values in config.items()}
        server = merged.setdefault("server", {})
        server["listen"] = [f"127.0.0.1:{self.port}", *server.get("listen", [])]
        self.config_path.write_text(render_toml(merged))

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the daemon to exit by itself; returns its exit code."""
        assert self.process is not None, "start() first"
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def send(self, sig: int) -> None:
        assert self.process is not None, "start() first"
        self.process.send_signal(sig)

    def start(self) -> "Daemon":
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "postfix_sts",
                "serve",
                "--config",
                str(self.config_path),
                "--log-level",
                "debug",
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"daemon did not listen within {START_TIMEOUT} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the daemon (SIGTERM, or SIGKILL to simulate a crash); returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=5)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def postmap(self, key: str, map_name: str = "postfix") -> str:
        """Postfix's own client: ``postmap -q KEY socketmap:inet:127.0.0.1:PORT:NAME``.

        Returns the value printed for a found key, ``NOTFOUND`` when postmap prints
        nothing, or ``ERROR: <postmap's message>`` for a lookup error (TEMP/PERM).
        """
        postmap = shutil.which("postmap") or "/usr/sbin/postmap"
        result = subprocess.run(
            [
                postmap,
                "-c",
                str(self.postfix_dir),
                "-q",
                key,
                f"socketmap:inet:127.0.0.1:{self.port}:{map_name}",
            ],
            capture_output=True,
            text=True,
            timeout=ANSWER_TIMEOUT,
            check=False,
        )
        if result.returncode == 0:
            return result.stdout.strip()
        if not result.stderr.strip():
            return "NOTFOUND"
        return "ERROR: " + result.stderr.strip().splitlines()[-1]

    def query(self, *keys: str, map_name: str = "postfix") -> list[str]:
        """Send requests on one persistent connection; return the reply payloads in order."""
        requests = b"".join(
            b"%d:%s," % (len(p), p) for p in (f"{map_name} {k}".encode() for k in keys)
        )
        return [r.decode() for r in self.raw(requests, len(keys))]

    def raw(self, data: bytes, replies: int) -> list[bytes]:
        """Send raw bytes; read up to ``replies`` netstrings (or until the server closes)."""
        out: list[bytes] = []
        with socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_TIMEOUT) as sock:
            sock.sendall(data)
            buffer = b""
            while len(out) < replies:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b":" in buffer:
                    length_text, _, rest = buffer.partition(b":")
                    length = int(length_text)
                    if len(rest) < length + 1:
                        break
                    out.append(rest[:length])
                    buffer = rest[length + 1 :]
        return out
