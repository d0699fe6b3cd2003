"""Admission of booting stations: in a boot storm, take what the server can answer in time and
tell the rest to come back, rather than letting them queue until they time out and retry all at
once.

Two gates: a station that boots while too many commands wait to be stored is answered Pending
(with an interval), as OCPP provides; a station that connects while the event loop is too far
behind is refused at the WebSocket handshake (HTTP 503 with Retry-After), before it costs the
loop a connection to serve.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from adapters import metrics

# Seconds a station is told to wait before booting again, or None to accept it now.
Admission = Callable[[], int | None]

RETRY_SECONDS = (20, 60)  # spread over a range, so the stations do not come back together


def admit_all() -> int | None:
    return None


def refuse_while(overloaded: Callable[[], bool]) -> Admission:
    """Tells a station to come back later (at a random time in range) while it is True."""

    def retry_after() -> int | None:
        return random.randint(*RETRY_SECONDS) if overloaded() else None

    return retry_after


def by_backlog(backlog: Callable[[], int], limit: int) -> Admission:
    """Accepts while fewer than `limit` commands wait to be committed; 0 accepts always."""
    return refuse_while(lambda: limit > 0 and backlog() >= limit)


def by_loop_lag(lag: Callable[[], float], limit: float) -> Admission:
    """Admits while the event loop is less than `limit` seconds behind; 0 admits always."""
    return refuse_while(lambda: limit > 0 and lag() >= limit)


class LoopLag:
    """How far behind the running event loop is: how late a timer of its own fires.

    A late tick counts at once; the figure then decays by a tenth a tick, so one slow moment
    keeps the server cautious for a second or so, not for good.
    """

    TICK = 0.1

    def __init__(self) -> None:
        self.seconds = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.TICK)
            late = max(0.0, loop.time() - before - self.TICK)
            self.seconds = max(late, self.seconds * 0.9)
            metrics.LOOP_LAG.set(self.seconds)
