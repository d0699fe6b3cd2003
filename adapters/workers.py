"""Runs several server processes side by side, restarting any that dies, until told to stop.

Python runs one event loop per process; more processes share the listening ports (the kernel
spreads new connections over them) and coordinate through the database as separate nodes do.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
CHECK_SECONDS = 0.5
STEADY_SECONDS = 30.0  # a worker that lived this long had started well
MAX_BACKOFF = 60.0


def supervise(
    names: Sequence[str],
    target: Callable[..., None],
    args: tuple[Any, ...],
    on_exit: Callable[[int], None] = lambda pid: None,
) -> int:
    """Runs `target(*args, index)` in a process for each index of `names` (what the log calls
    it) until SIGINT or SIGTERM.

    `on_exit(pid)` is told of each process that died. Returns 0 if every process then stopped
    cleanly, else 1.
    """
    context = multiprocessing.get_context("spawn")  # no threads or connections inherited
    stopping = threading.Event()

    def start(index: int) -> _Worker:
        name = names[index]
        process = context.Process(
            target=target, args=(*args, index), name=f"csms-{name.replace(' ', '-')}"
        )
        process.start()
        log.info("%s started (pid %s)", name, process.pid)
        return _Worker(process, time.monotonic())

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()
        for worker in workers:
            if worker.process.is_alive():
                worker.process.terminate()  # SIGTERM: each worker shuts down as on Ctrl-C

    workers = [start(i) for i in range(len(names))]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.wait(CHECK_SECONDS):
        for index, worker in enumerate(workers):
            if worker.process.is_alive() or time.monotonic() < worker.restart_at:
                continue
            if worker.restart_at == 0.0:
                if worker.process.pid is not None:
                    on_exit(worker.process.pid)
                worker.restart_at = time.monotonic() + worker.backoff()
                log.error(
                    "%s (pid %s) exited with code %s; starting another in %.0f s",
                    names[index],
                    worker.process.pid,
                    worker.process.exitcode,
                    worker.restart_at - time.monotonic(),
                )
                continue
            replacement = start(index)
            replacement.failures = worker.failures
            workers[index] = replacement
    for worker in workers:
        worker.process.join()
    log.info("all processes stopped")
    return 0 if all(worker.process.exitcode == 0 for worker in workers) else 1


@dataclass
class _Worker:
    process: BaseProcess
    started: float
    restart_at: float = 0.0  # when to replace it, once it has died
    failures: int = 0  # deaths in a row soon after starting

    def backoff(self) -> float:
        """Seconds to wait before a replacement: longer while each dies soon after starting
        (the database unreachable, say), so the log is not flooded."""
        lived = time.monotonic() - self.started
        self.failures = self.failures + 1 if lived < STEADY_SECONDS else 0
        return min(MAX_BACKOFF, RESTART_PAUSE * 2.0**self.failures)
