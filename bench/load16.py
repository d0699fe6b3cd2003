"""Load a CSMS with simulated OCPP 1.6J stations and print what it sustained.

Each station connects, boots, reports its connector, then until the time is up runs
transactions: StartTransaction, MeterValues every so often, StopTransaction, a Heartbeat between
them. Every call waits for its answer, as a real station does. Prints a progress line each second
and, at the end, messages/s, answer latency percentiles and every kind of error.

    python bench/load16.py --url ws://127.0.0.1:9000 --stations 1000 --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import websockets


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    connected: int = 0
    transactions: int = 0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Station:
    def __init__(self, url: str, name: str, stats: Stats, timeout: float) -> None:
        self.url = f"{url.rstrip('/')}/{name}"
        self.stats = stats
        self.timeout = timeout
        self.ids = itertools.count()
        self.meter = 0

    async def call(self, ws: Any, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        message_id = str(next(self.ids))
        started = time.perf_counter()
        await ws.send(json.dumps([2, message_id, action, payload]))
        try:
            reply = json.loads(await asyncio.wait_for(ws.recv(), self.timeout))
        except TimeoutError:
            self.stats.errors[f"timeout {action}"] += 1
            return None
        self.stats.latencies.append(time.perf_counter() - started)
        if reply[0] != 3:
            self.stats.errors[f"CallError {action} {reply[2]}"] += 1
            return None
        result: dict[str, Any] = reply[2]
        return result

    async def run(self, deadline: float, meter_values_per_tx: int, pause: float) -> None:
        try:
            async with websockets.connect(
                self.url, subprotocols=["ocpp1.6"], open_timeout=60, compression=None
            ) as ws:  # type: ignore[arg-type]
                self.stats.connected += 1
                await self.session(ws, deadline, meter_values_per_tx, pause)
        except (OSError, websockets.WebSocketException) as error:
            self.stats.errors[f"connection {type(error).__name__}"] += 1

    async def session(self, ws: Any, deadline: float, per_tx: int, pause: float) -> None:
        boot = {"chargePointVendor": "Bench", "chargePointModel": "Sim-1"}
        await self.call(ws, "BootNotification", boot)
        status = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
        await self.call(ws, "StatusNotification", status)
        while time.monotonic() < deadline:
            start = {
                "connectorId": 1,
                "idTag": "BENCH",
                "meterStart": self.meter,
                "timestamp": now_iso(),
            }
            started = await self.call(ws, "StartTransaction", start)
            if started is None:
                continue
            tx = started["transactionId"]
            for _ in range(per_tx):
                await asyncio.sleep(pause)
                self.meter += 250
                sample = {
                    "timestamp": now_iso(),
                    "sampledValue": [
                        {
                            "value": str(self.meter),
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                        }
                    ],
                }
                await self.call(
                    ws,
                    "MeterValues",
                    {"connectorId": 1, "transactionId": tx, "meterValue": [sample]},
                )
            stop = {"transactionId": tx, "meterStop": self.meter, "timestamp": now_iso()}
            if await self.call(ws, "StopTransaction", stop) is not None:
                self.stats.transactions += 1
            await self.call(ws, "Heartbeat", {})
            await asyncio.sleep(pause)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


async def progress(stats: Stats, stations: int, started: float, stop: asyncio.Event) -> None:
    previous = 0
    while not stop.is_set():
        await asyncio.sleep(1)
        answered = len(stats.latencies)
        print(
            f"  {time.monotonic() - started:5.0f}s  connected {stats.connected:>6}/{stations}"
            f"  answered {answered:>8}  {answered - previous:>6} msg/s"
            f"  errors {sum(stats.errors.values())}",
            file=sys.stderr,
            flush=True,
        )
        previous = answered


async def main(args: argparse.Namespace) -> None:
    stats = Stats()
    started = time.monotonic()
    deadline = started + args.duration
    stop = asyncio.Event()
    reporter = asyncio.create_task(progress(stats, args.stations, started, stop))
    stations = [
        Station(args.url, f"{args.prefix}-{i:05d}", stats, args.timeout)
        for i in range(args.stations)
    ]
    tasks = []
    for i, station in enumerate(stations):
        tasks.append(asyncio.create_task(station.run(deadline, args.meter_values, args.pause)))
        if i % args.ramp == args.ramp - 1:
            await asyncio.sleep(0.05)  # spread the connects a little
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    stop.set()
    await reporter
    answered = len(stats.latencies)
    print(f"stations        {args.stations} (connected {stats.connected})")
    print(f"duration        {elapsed:.1f} s")
    print(f"answered        {answered} messages, {answered / elapsed:.0f} msg/s")
    print(f"transactions    {stats.transactions} completed")
    if answered:
        print(f"latency p50     {percentile(stats.latencies, 0.50) * 1000:.1f} ms")
        print(f"latency p99     {percentile(stats.latencies, 0.99) * 1000:.1f} ms")
        print(f"latency max     {max(stats.latencies) * 1000:.1f} ms")
    print(f"errors          {sum(stats.errors.values())}")
    for kind, count in stats.errors.most_common():
        print(f"  {count:>8}  {kind}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="ws://127.0.0.1:9000", help="the CSMS's OCPP endpoint")
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30, help="seconds of traffic")
    parser.add_argument("--meter-values", type=int, default=4, help="MeterValues per transaction")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds a station waits between calls (0: as fast as answered)",
    )
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for an answer")
    parser.add_argument("--ramp", type=int, default=100, help="stations connected per 50 ms")
    parser.add_argument("--prefix", default="BENCH", help="station id prefix")
    asyncio.run(main(parser.parse_args()))
