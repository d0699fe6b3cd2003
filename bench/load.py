"""Load any OCPP-J CSMS with simulated stations (mixed 1.6 / 2.0.1) and print what it sustained.

Two scenarios:

- steady: the stations connect over --ramp seconds, boot, then run transactions (status, start,
  meter values, stop, status, heartbeat), paced so that together they offer --rate messages/s
  (0: each calls again as soon as it is answered). The steady figures are taken over --duration
  seconds, after --warmup seconds in which the backlog of the boots settles.
- storm: all stations connect and boot within --window seconds, report their status, replay one
  transaction each that they queued while offline, then stay connected for --hold seconds.

A progress line each second; at the end, messages/s, latency percentiles by kind of message,
CallErrors, timeouts, the server's RSS (when it runs on this machine), the cores used by the
server, by the load and by the rest of the machine, then, given --graphql and --token, how long
the read side took to show every transaction the stations ran, and whether each is there and
correct. Each target of the performance issue is printed with its verdict.

    python -m bench.load --url ws://127.0.0.1:9000 --stations 2000 --rate 1000 --duration 60
    python -m bench.load --scenario storm --stations 20000 --window 60 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import multiprocessing
import os
import queue
import random
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import websockets

from bench import readside, server_metrics, usage
from bench.sim import STATE_CHANGING, Ran, Station, Tally

REPORT_SECONDS = 0.5


@dataclass(frozen=True)
class Plan:
    url: str
    scenario: str
    stations: int
    processes: int
    share_201: float
    duration: float
    rate: float
    ramp: float
    warmup: float
    window: float
    hold: float
    meter_values: int
    heartbeat: float
    timeout: float
    prefix: str
    password: str | None = None
    ca: str | None = None

    def station_ids(self, shard: int) -> list[tuple[int, str, str]]:
        """(index, id, protocol) of the stations one process drives."""
        return [
            (i, f"{self.prefix}-{i:05d}", self.protocol(i))
            for i in range(shard, self.stations, self.processes)
        ]

    @property
    def measured(self) -> tuple[float, float]:
        """The steady scenario's measuring window, in seconds from the start."""
        begin = self.ramp + self.warmup
        return begin, begin + self.duration

    def protocol(self, index: int) -> str:
        """2.0.1 for --share-201 of the stations, spread evenly over them (of any number)."""
        chosen = math.floor((index + 1) * self.share_201) > math.floor(index * self.share_201)
        return "ocpp2.0.1" if chosen else "ocpp1.6"

    @property
    def pause(self) -> float:
        """Seconds each station waits between calls so that all together offer --rate."""
        return self.stations / self.rate if self.rate > 0 else 0.0


# -- the load, one process per shard of stations ------------------------------------------


def drive(plan: Plan, shard: int, started: float, reports: Any, parent: int) -> None:
    """Entry point of a load process: runs its stations, reporting its tally as it goes to
    the load's process, `parent` (it may be gone by the time this one is up)."""
    # Rare collections, as in the server: the generator's own pauses would count as latency.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    asyncio.run(_drive(plan, shard, started, reports, parent))
    _exit_if_orphaned(parent)  # else exiting waits for the reader of the last report


def _exit_if_orphaned(parent: int) -> None:
    """Exits now if the load that started this process is gone (killed): its stations must not
    go on loading the server alone."""
    if os.getppid() != parent:
        os._exit(1)


async def _drive(plan: Plan, shard: int, started: float, reports: Any, parent: int) -> None:
    tally = Tally()
    stations = [
        Station(plan.url, station_id, protocol, tally, plan.timeout, plan.password, plan.ca)
        for _, station_id, protocol in plan.station_ids(shard)
    ]
    scenario = steady if plan.scenario == "steady" else storm
    runs = [
        asyncio.create_task(
            _guarded(station, scenario(plan, station, started, n * plan.processes + shard))
        )
        for n, station in enumerate(stations)
    ]
    reporting = asyncio.create_task(_report(tally, shard, reports, parent))
    await asyncio.gather(*runs)
    reporting.cancel()
    reports.put((shard, tally.take(), True))


async def _guarded(station: Station, scenario: Coroutine[Any, Any, None]) -> None:
    """Runs a station's scenario; a connection the server closes ends it, counted as an error."""
    try:
        await scenario
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else "no close frame"
        station.tally.errors[f"connection closed by the server ({code})"] += 1


async def _report(tally: Tally, shard: int, reports: Any, parent: int) -> None:
    while True:
        await asyncio.sleep(REPORT_SECONDS)
        _exit_if_orphaned(parent)
        reports.put((shard, tally.take(), False))


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


async def steady(plan: Plan, station: Station, started: float, index: int) -> None:
    await _sleep_until(started + plan.ramp * index / plan.stations)
    deadline = started + plan.measured[1]
    if not await station.connect(give_up_at=deadline):
        return
    try:
        if not await station.boot(give_up_at=deadline):
            return
        await station.status("Available")
        pause = plan.pause
        await asyncio.sleep(random.random() * pause)  # no lock-step between stations
        while time.time() < deadline:
            await station.status("Charging")
            await asyncio.sleep(pause)
            await station.transaction(plan.meter_values, pause, datetime.now(UTC))
            await asyncio.sleep(pause)
            await station.status("Available")
            await asyncio.sleep(pause)
            await station.heartbeat()
            await asyncio.sleep(pause)
    finally:
        await station.close()


async def storm(plan: Plan, station: Station, started: float, index: int) -> None:
    await _sleep_until(started + plan.window * index / plan.stations)
    hold_until = started + plan.window + plan.hold
    if not await station.connect(give_up_at=hold_until):
        return
    try:
        if not await station.boot(give_up_at=hold_until):
            return
        await station.status("Available")
        queued_at = datetime.now(UTC) - timedelta(minutes=30)
        await station.transaction(plan.meter_values, 0.0, queued_at)
        while time.time() + plan.heartbeat < hold_until:
            await asyncio.sleep(plan.heartbeat)
            await station.heartbeat()
        await _sleep_until(hold_until)
    finally:
        await station.close()


# -- the parent: gathers, shows progress, reports ------------------------------------------


@dataclass
class Totals:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    window_latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    transactions: list[Ran] = field(default_factory=list)
    connected: dict[int, int] = field(default_factory=dict)  # by load process
    peak_connected: int = 0
    peak_rss: int = 0
    server_programs: set[str] = field(default_factory=set)
    # CPU time used by then, at the first and the last progress line in the measured window.
    cpu: tuple[usage.Sample, usage.Sample] | None = None
    # The server's answer histogram (--metrics), at the first and the last scrape in the window.
    server_answers: tuple[server_metrics.Buckets, server_metrics.Buckets] | None = None

    def add(self, shard: int, tally: Tally, in_window: bool) -> None:
        for kind, values in tally.latencies.items():
            self.latencies.setdefault(kind, []).extend(values)
            if in_window:
                self.window_latencies.setdefault(kind, []).extend(values)
        self.errors.update(tally.errors)
        self.notes.update(tally.notes)
        self.transactions.extend(tally.transactions)
        self.connected[shard] = tally.connected
        self.peak_connected = max(self.peak_connected, sum(self.connected.values()))

    def answered(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    plan: Plan,
    server_pids: list[int],
    probe: readside.LagProbe | None = None,
    metrics_url: str | None = None,
) -> Totals:
    """Runs the load in --processes processes, printing progress each second."""
    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    started = time.time() + 1.0 + 0.3 * plan.processes  # every process is up before it starts
    workers = [
        context.Process(
            target=drive, args=(plan, shard, started, reports, os.getpid()), daemon=True
        )
        for shard in range(plan.processes)
    ]
    for worker in workers:
        worker.start()
    port = urlsplit(plan.url).port or 80
    # The steady figures are taken once every station is connected and the backlog of their
    # boots has settled, until the end.
    window = (started + plan.measured[0], started + plan.measured[1])
    if plan.scenario == "storm":
        window = (started, float("inf"))
    totals = Totals()
    listening: list[int] = []  # found once: reading every process's sockets is not free
    finished, last_print, last_answered = 0, time.time(), 0
    while finished < plan.processes:
        try:
            shard, tally, done = reports.get(timeout=5)
        except queue.Empty:
            if any(w.exitcode not in (None, 0) for w in workers):
                raise SystemExit("a load process failed; its error is above") from None
            continue
        now = time.time()
        totals.add(shard, tally, window[0] <= now - REPORT_SECONDS / 2 <= window[1])
        if probe is not None:
            probe.offer(tally.transactions)
        finished += done
        if now - last_print >= 1.0:
            listening = listening or usage.listeners(port)
            parents = usage.parents()
            server = usage.family(listening + server_pids, parents)
            server_rss = usage.resident(server)
            totals.peak_rss = max(totals.peak_rss, server_rss)
            totals.server_programs |= usage.executables(server)
            answered = totals.answered()
            if window[0] <= now <= window[1]:
                taken = usage.sample(answered, server, usage.family([os.getpid()], parents))
                totals.cpu = (totals.cpu[0] if totals.cpu else taken, taken)
                if metrics_url and totals.server_answers is None:
                    # Once as the window opens, once at the end: a scrape costs the server
                    # CPU (about 12 ms a worker), which more scrapes would add to what it
                    # measures.
                    metrics_url = _scrape_into(totals, metrics_url)
            print(
                f"  {now - started:6.1f}s  connected {sum(totals.connected.values()):>6}"
                f"  answered {answered:>9}"
                f"  {(answered - last_answered) / (now - last_print):>6.0f} msg/s"
                f"  errors {sum(totals.errors.values()):>5}"
                f"  server RSS {server_rss / 2**20:>6.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
            last_print, last_answered = now, answered
    for worker in workers:
        worker.join()
    if metrics_url and totals.server_answers:
        _scrape_into(totals, metrics_url)  # the window's last answers, however short it was
    return totals


def _scrape_into(totals: Totals, url: str) -> str | None:
    """Takes the server's answer histogram; the URL again, or None if it cannot be read."""
    try:
        buckets = server_metrics.scrape(url, STATE_CHANGING)
    except (OSError, ValueError) as error:
        print(f"  --metrics {url}: {error}; the server's own figures are left out", file=sys.stderr)
        return None
    totals.server_answers = (totals.server_answers or (buckets, buckets))[0], buckets
    return url


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(plan: Plan, totals: Totals, elapsed: float, loop_us: float) -> list[str]:
    """The figures, then the targets with their verdicts; `loop_us`: the machine's speed, as
    `usage.loop_microseconds` timed it before the load."""
    lines = [
        f"stations        {plan.stations} ({plan.share_201:.0%} OCPP 2.0.1), "
        f"{plan.processes} load processes, peak {totals.peak_connected} connected",
        f"answered        {totals.answered()} messages in {elapsed:.1f} s",
    ]
    for kind in ("boot", "state", "other"):
        values = totals.latencies.get(kind, [])
        if values:
            lines.append(
                f"  {kind:<6} {len(values):>9}  p50 {percentile(values, 0.5) * 1000:7.1f} ms"
                f"  p95 {percentile(values, 0.95) * 1000:7.1f} ms"
                f"  p99 {percentile(values, 0.99) * 1000:7.1f} ms"
                f"  max {max(values) * 1000:7.1f} ms"
            )
    if totals.server_answers:
        lines += server_metrics.report(*totals.server_answers)
    timeouts = sum(n for kind, n in totals.errors.items() if kind.startswith("timeout"))
    call_errors = sum(n for kind, n in totals.errors.items() if kind.startswith("CallError"))
    lines.append(f"errors          {sum(totals.errors.values())}")
    lines += [f"  {count:>9}  {kind}" for kind, count in totals.errors.most_common(12)]
    lines += [f"{kind:<30}  {count}" for kind, count in sorted(totals.notes.items())]
    if totals.peak_rss:
        lines.append(f"server RSS      peak {totals.peak_rss / 2**20:.0f} MiB")
    lines.append(usage.interpreters(totals.server_programs))
    lines.append(usage.machine_speed(loop_us))
    if totals.cpu:
        lines += usage.cpu_report(*totals.cpu, server_known=totals.peak_rss > 0)
    lines.append("targets")
    if plan.scenario == "storm":
        boots = totals.latencies.get("boot", [])
        p99 = percentile(boots, 0.99)
        accepted = totals.notes["stations accepted"]
        ok = accepted == plan.stations and p99 < 2.0 and not timeouts and not call_errors
        lines.append(
            f"  {verdict(ok)}  storm: {accepted}/{plan.stations} stations accepted (connecting "
            f"within {plan.window:.0f} s), {len(boots)} boots answered, p99 {p99 * 1000:.0f} ms "
            f"(< 2,000), {timeouts} timeouts, {call_errors} CallErrors"
            + ("" if plan.stations >= 20000 else "  [the target is 20,000 stations in 60 s]")
        )
        held = totals.peak_connected
        ok = held >= 20000 and 0 < totals.peak_rss < 2 * 2**30
        lines.append(
            f"  {verdict(ok)}  held {held} connections (20,000) with server RSS "
            f"{totals.peak_rss / 2**20:.0f} MiB (< 2,048)"
        )
    else:
        state = totals.window_latencies.get("state", [])
        rate = len(state) / plan.duration
        p99 = percentile(state, 0.99)
        ok = rate >= 3000 and p99 < 0.1
        lines.append(
            f"  {verdict(ok)}  steady: {rate:.0f} state-changing msg/s answered (>= 3,000), "
            f"p99 {p99 * 1000:.1f} ms (< 100)"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    plan = Plan(
        url=args.url,
        scenario=args.scenario,
        stations=args.stations,
        processes=args.processes,
        share_201=args.share_201,
        duration=args.duration,
        rate=args.rate,
        ramp=args.ramp if args.ramp is not None else args.stations / 500,
        warmup=args.warmup,
        window=args.window,
        hold=args.hold,
        meter_values=args.meter_values,
        heartbeat=args.heartbeat,
        timeout=args.timeout,
        prefix=args.prefix or f"B{int(time.time()) % 1000000:06d}",
        password=args.password,
        ca=args.ca,
    )
    _check_reachable(args.graphql, args.token, args.metrics)
    loop_us = usage.loop_microseconds()  # while the cores are free of the load
    probe = readside.LagProbe(args.graphql, args.token) if args.graphql else None
    if probe is not None:
        probe.start()
    began = time.time()
    totals = run(plan, args.server_pid, probe, args.metrics)
    elapsed = time.time() - began
    lines = report(plan, totals, elapsed, loop_us)
    if probe is not None:
        probe.stop()
        lines += asyncio.run(
            readside.check(args.graphql, args.token, totals.transactions, probe.lags)
        )
    print("\n".join(lines))


def _check_reachable(graphql: str | None, token: str | None, metrics: str | None) -> None:
    """Exits with the cause if the read side or the metrics cannot be read: found after the
    load, it would have wasted the run."""
    if graphql and (problem := readside.problem_with(graphql, token)):
        raise SystemExit(f"--graphql {graphql}: {problem}; or leave --graphql out")
    if metrics:
        try:
            server_metrics.scrape(metrics, ())
        except (OSError, ValueError) as error:
            raise SystemExit(
                f"--metrics {metrics}: {error}; give the server's Prometheus metrics URL "
                "(csms: http://HTTP_HOST:HTTP_PORT/metrics), or leave --metrics out"
            ) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", default="ws://127.0.0.1:9000", help="the CSMS's OCPP endpoint")
    p.add_argument("--scenario", choices=("steady", "storm"), default="steady")
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--processes", type=int, default=1, help="load processes to spread over")
    p.add_argument("--share-201", type=float, default=0.5, help="share of 2.0.1 stations")
    p.add_argument("--duration", type=float, default=30, help="steady: seconds measured")
    p.add_argument("--rate", type=float, default=0, help="steady: msg/s offered (0: unpaced)")
    p.add_argument("--ramp", type=float, help="steady: seconds to connect (stations/500)")
    p.add_argument(
        "--warmup",
        type=float,
        default=10,
        help="steady: seconds after the ramp before measuring (the boots' backlog settles)",
    )
    p.add_argument("--window", type=float, default=60, help="storm: seconds to connect all")
    p.add_argument("--hold", type=float, default=10, help="storm: seconds held after that")
    p.add_argument("--meter-values", type=int, default=4, help="meter values per transaction")
    p.add_argument("--heartbeat", type=float, default=60, help="storm: heartbeat interval")
    p.add_argument("--timeout", type=float, default=30, help="seconds to wait for an answer")
    p.add_argument("--prefix", help="station id prefix (default: one per run)")
    p.add_argument(
        "--ca", help="wss://: PEM CA certificates to trust the server's by (default: the system's)"
    )
    p.add_argument(
        "--password",
        help="every station's HTTP Basic password (its identity is the user name), for a CSMS "
        "that asks for one; with csms, register the stations first (csms station import)",
    )
    p.add_argument("--server-pid", type=int, action="append", default=[], help="count its RSS")
    p.add_argument("--graphql", help="the CSMS's GraphQL URL, to check the transactions")
    p.add_argument("--token", help="an API token that may read transactions")
    p.add_argument(
        "--metrics",
        help="the CSMS's Prometheus metrics URL (csms: http://127.0.0.1:8000/metrics), to print "
        "its own answer times beside the stations'",
    )
    return p


if __name__ == "__main__":
    main()
