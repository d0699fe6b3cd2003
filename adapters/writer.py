"""The command writer: gathers commands from every connection and commits them in batches.

One thread owns the write side of the application. While it commits one batch, the next one
gathers, so one commit carries many events and the commit rate does not cap the message rate.
Under load, a batch also waits until its first command has waited GATHER_SECONDS: a batch costs
the writer, the event loops and PostgreSQL about as much whatever it holds. A caller's future is
settled only after its events are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from typing import Any, NamedTuple

from domain.commands import Command
from domain.service import CSMS

log = logging.getLogger(__name__)

# How long the first command of a batch waits for others under load. At 1,000 msg/s on two
# workers, 10 ms took the server from 0.83 to 0.70 of a core and PostgreSQL from 0.33 to 0.26,
# for 7 ms more at p50 (the writer's client CPU is 200 us a command in batches of one, 26 in
# batches of twenty).
GATHER_SECONDS = 0.01
# Commands a second below which a writer does not wait: there, a batch of one costs little.
BUSY_RATE = 200.0


class _Pending(NamedTuple):  # one a message: a tuple is made faster than a frozen dataclass
    command: Command[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    queued: float  # time.monotonic()


class Rate:
    """Commands a second, as counted over the last whole second."""

    def __init__(self, start: float) -> None:
        self.per_second = 0.0
        self._since = start  # time.monotonic()
        self._count = 0

    def count(self, commands: int, now: float) -> None:
        self._count += commands
        if now - self._since >= 1.0:
            self.per_second = self._count / (now - self._since)
            self._since, self._count = now, 0


def gathering_pause(queued: float, now: float, rate: float, gather: float, busy: float) -> float:
    """Seconds the writer waits before taking the batch whose first command was `queued`: what is
    left of `gather` since then, when commands come at `busy` a second or more; else none."""
    if rate < busy:
        return 0.0
    return max(0.0, queued + gather - now)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():
        return  # the caller gave up (its connection closed)
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _settle_all(settled: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, outcome in settled:
        _settle(future, outcome)


class CommandWriter:
    def __init__(
        self,
        app: CSMS,
        max_batch: int = 500,
        gather_seconds: float = GATHER_SECONDS,
        busy_rate: float = BUSY_RATE,
    ) -> None:
        self._app = app
        self._max_batch = max_batch
        self._gather_seconds = gather_seconds
        self._busy_rate = busy_rate
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="command-writer", daemon=True)
        self.rate = Rate(time.monotonic())
        self.batches = 0  # committed, or failed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Commits what is queued, then stops."""
        self._queue.put(None)
        self._thread.join()

    def backlog(self) -> int:
        """Commands waiting for the writer (an estimate while it runs)."""
        return self._queue.qsize()

    async def submit(self, command: Command[Any]) -> Any:
        """Runs the command; returns its result once its events are committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Pending(command, future, loop, time.monotonic()))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            pause = gathering_pause(
                first.queued,
                time.monotonic(),
                self.rate.per_second,
                self._gather_seconds,
                self._busy_rate,
            )
            if pause:
                time.sleep(pause)
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self.rate.count(len(batch), time.monotonic())
            self._commit(batch)
            self.batches += 1

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self._app.execute_batch([p.command for p in batch])
        except Exception as error:  # the store itself failed: every caller learns it
            log.exception("committing a batch of %d commands failed", len(batch))
            outcomes = [error] * len(batch)
        # One wake-up per event loop for the whole batch, not one per command.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, settled in by_loop.items():
            # The events are committed either way; a caller whose loop has closed hears nothing.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)
