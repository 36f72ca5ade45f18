"""Fixtures for integration tests that run against the loopback test world."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon
from tests.world import World, missing_binaries


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """NSD + validating unbound + HTTPS policy server, shared by the session."""
    missing = missing_binaries()
    if missing:
        pytest.fail(
            "integration tests need these binaries (CI installs them): " + ", ".join(missing),
            pytrace=False,
        )
    world = World.start(tmp_path_factory.mktemp("world"))
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def start_daemon(world: World, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start postfix-sts daemons pointed at the world; stopped after the test.

    Keyword arguments are config sections merged over the world's settings, e.g.
    ``start_daemon(sts={"txt_recheck_interval": 1})``.
    """
    started: list[Daemon] = []
    host, port = world.resolver

    def start(**sections: dict[str, Any]) -> Daemon:
        config: dict[str, dict[str, Any]] = {
            "dns": {"nameservers": [f"{host}:{port}"], "timeout": 2.0},
            "sts": {
                "ca_file": str(world.ca_file),
                "allow_private_addresses": True,
                "https_port": world.https.port,
                "fetch_timeout": 3.0,
            },
            "cache": {"backend": "sqlite", "path": str(tmp_path / f"cache{len(started)}.sqlite3")},
            "dane": {"secure_probe": "test.", "bogus_probe": "bogus."},
        }
        for section, values in sections.items():
            if section == "profiles":
                for name, profile in values.items():
                    config[f"profiles.{name}"] = profile
            else:
                config.setdefault(section, {}).update(values)
        directory = tmp_path / f"daemon{len(started)}"
        directory.mkdir()
        daemon = Daemon(directory, config)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()
