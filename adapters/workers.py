"""Runs several server processes side by side, restarting any that dies, until told to stop.

Python runs one event loop per process; more processes share the listening ports (the kernel
spreads new connections over them) and coordinate through the database as separate nodes do.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0


def supervise(count: int, target: Callable[..., None], args: tuple[Any, ...]) -> None:
    """Runs `target(*args, index)` in `count` processes until SIGINT or SIGTERM."""
    context = multiprocessing.get_context("spawn")  # no threads or connections inherited
    stopping = threading.Event()

    def start(index: int) -> BaseProcess:
        process = context.Process(target=target, args=(*args, index), name=f"csms-worker-{index}")
        process.start()
        log.info("worker %d started (pid %s)", index, process.pid)
        return process

    def stop(_signum: int, _frame: object) -> None:
        stopping.set()
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker shuts down as on Ctrl-C

    processes = [start(i) for i in range(count)]
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.wait(RESTART_PAUSE):
        for index, process in enumerate(processes):
            if not process.is_alive() and not stopping.is_set():
                log.error(
                    "worker %d (pid %s) exited with code %s; starting another",
                    index,
                    process.pid,
                    process.exitcode,
                )
                processes[index] = start(index)
    for process in processes:
        process.join()
    log.info("all workers stopped")
