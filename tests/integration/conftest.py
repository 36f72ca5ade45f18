"""Fixtures for integration tests that run against the loopback test world."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.daemon import Daemon, world_config
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

    def start(**sections: dict[str, Any]) -> Daemon:
        cache_path = tmp_path / f"cache{len(started)}.sqlite3"
        config = world_config(world, cache_path, **sections)
        directory = tmp_path / f"daemon{len(started)}"
        directory.mkdir()
        daemon = Daemon(directory, config)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()
