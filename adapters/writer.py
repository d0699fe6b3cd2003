"""The command writer: gathers commands from every connection and commits them in batches.

One thread owns the write side of the application. While it commits one batch, the next one
gathers, so one commit carries many events and the commit rate does not cap the message rate.
Under load from many stations, a batch also waits until its first command has waited 10 ms: a
batch costs the writer, the event loops and PostgreSQL about as much whatever it holds. A
caller's future is settled only after its events are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from adapters import metrics
from domain.commands import Command
from domain.service import CSMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gathering:
    """When, under load, the first command of a batch waits for others, and how long.

    At 1,000 msg/s from 1,000 stations on two workers, waiting 10 ms took the server from 0.86 to
    0.70 of a core and PostgreSQL from 0.35 to 0.27, for 7 ms more at p50: the writer's client
    CPU is 200 us a command in batches of one, 26 in batches of twenty. Few stations sending
    fast (one replaying what it queued offline) are each waiting for their own answer, so no
    other command would come meanwhile: for them, a writer does not wait.
    """

    seconds: float = 0.01
    busy_rate: float = 200.0  # commands a second, below which a batch of one costs little
    busy_senders: int = 50  # stations sending in a second, below which waiting gathers nothing

    def pause(self, queued: float, now: float, traffic: Traffic) -> float:
        """Seconds to wait before taking the batch whose first command was `queued` (as
        `now`, a time.monotonic()): what is left of `seconds` since then, if busy; else none."""
        if traffic.per_second < self.busy_rate or traffic.senders < self.busy_senders:
            return 0.0
        return max(0.0, queued + self.seconds - now)


class _Pending(NamedTuple):  # one a message: a tuple is made faster than a frozen dataclass
    command: Command[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    queued: float  # time.monotonic()


class Traffic:
    """Commands a second, and the stations they came from, counted over the last whole second."""

    def __init__(self, start: float) -> None:
        self.per_second = 0.0
        self.senders = 0
        self._since = start  # time.monotonic()
        self._count = 0
        self._seen: set[Hashable] = set()

    def count(self, senders: Sequence[Hashable], now: float) -> None:
        """Counts one command from each sender (a station's id; None for others)."""
        self._count += len(senders)
        self._seen.update(senders)
        if now - self._since >= 1.0:
            self.per_second = self._count / (now - self._since)
            self.senders = len(self._seen)
            self._since, self._count = now, 0
            self._seen.clear()


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
        gathering: Gathering = Gathering(),
    ) -> None:
        self._app = app
        self._max_batch = max_batch
        self._gathering = gathering
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="command-writer", daemon=True)
        self.traffic = Traffic(time.monotonic())
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
            pause = self._gathering.pause(first.queued, time.monotonic(), self.traffic)
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
            senders = [getattr(pending.command, "station_id", None) for pending in batch]
            self.traffic.count(senders, time.monotonic())
            self._commit(batch)
            self.batches += 1

    def _commit(self, batch: list[_Pending]) -> None:
        began = time.perf_counter()
        try:
            outcomes = self._app.execute_batch([p.command for p in batch])
        except Exception as error:  # the store itself failed: every caller learns it
            log.exception("committing a batch of %d commands failed", len(batch))
            outcomes = [error] * len(batch)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - began)
        metrics.BATCHES.inc()
        metrics.COMMANDS.inc(len(batch))
        metrics.BACKLOG.set(self._queue.qsize())
        # One wake-up per event loop for the whole batch, not one per command.
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, settled in by_loop.items():
            # The events are committed either way; a caller whose loop has closed hears nothing.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle_all, settled)
