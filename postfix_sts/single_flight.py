"""Single-flight: concurrent requests for one key share one running resolution.

The shared work runs as its own task and each caller awaits it through
:func:`asyncio.shield`, so a caller that goes away (Postfix disconnecting) never
cancels the resolution the others are waiting for.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one ``make()`` per key at a time; ``on_join`` counts the sharers."""

    def __init__(self, on_join: Callable[[], None]) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}
        self._on_join = on_join

    async def run(self, key: str, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        shared = self._running.get(key)
        if shared is not None:
            self._on_join()
        else:
            shared = asyncio.ensure_future(make())
            self._running[key] = shared
            shared.add_done_callback(lambda _done: self._running.pop(key, None))
        return await asyncio.shield(shared)

    def __contains__(self, key: str) -> bool:
        return key in self._running
