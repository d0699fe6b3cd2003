"""The command writer: gathers commands from every connection and commits them in batches.

One thread owns the write side of the application. While it commits one batch, the next one
gathers, so one commit carries many events and the commit rate does not cap the message rate.
A caller's future is settled only after its events are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from domain.commands import Command
from domain.service import CSMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    command: Command[Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


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
    def __init__(self, app: CSMS, max_batch: int = 500) -> None:
        self._app = app
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="command-writer", daemon=True)

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
        self._queue.put(_Pending(command, future, loop))
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
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
            self._commit(batch)

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
