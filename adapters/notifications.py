"""PostgreSQL LISTEN/NOTIFY between nodes: one listening connection per node, no broker.

A notification is a hint ("look at command X", "station Y changed"); the facts are read from the
store, so a notification lost while reconnecting delays a reader but misleads no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable

import psycopg
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

Handler = Callable[[str], None]
RECONNECT_DELAY = 1.0


class Notifications:
    def __init__(self, database_url: str, pool: AsyncConnectionPool, channels: Iterable[str]):
        self._database_url = database_url
        self._pool = pool
        self._channels = tuple(channels)
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._listening_handlers: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def on(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def on_listening(self, handler: Callable[[], None]) -> None:
        """Called each time the node listens (again): what was notified before is missed."""
        self._listening_handlers.append(handler)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue of the channel's payloads while the context lasts."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)

        def put(payload: str) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a stalled reader misses hints only
                queue.put_nowait(payload)

        self.on(channel, put)
        try:
            yield queue
        finally:
            self._handlers[channel].remove(put)

    async def notify(self, channel: str, payload: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="notifications")
        await asyncio.wait_for(self.listening.wait(), timeout=30)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
            except psycopg.Error as error:
                self.listening.clear()
                log.warning("notification listener lost its connection (%s); reconnecting", error)
                await asyncio.sleep(RECONNECT_DELAY)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self._database_url, autocommit=True
        ) as conn:
            for channel in self._channels:
                await conn.execute(f'LISTEN "{channel}"')
            self.listening.set()
            for listening in self._listening_handlers:
                listening()
            async for notification in conn.notifies():
                for handler in list(self._handlers.get(notification.channel, ())):
                    try:
                        handler(notification.payload)
                    except Exception:
                        log.exception("handler of %s failed", notification.channel)
