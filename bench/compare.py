"""Runs the same steady load against the CSMS and its two references, one after the other, and
prints the ratios:

- csms: `csms serve` on a fresh embedded PostgreSQL (or --database-url), as users run it;
- store: the same with `--projections elsewhere`: events stored, no view fed (on one machine
  the views share its cores with the rest);
- memory: the same server with `--store memory` (eventsourcing's in-memory store), which feeds
  no view either: csms against it is what durable storage and the read side cost together,
  store against it what durable storage costs alone;
- bare: `bench/bare_server.py`, the `ocpp` package alone, storing nothing: what the whole
  pipeline costs.

    python -m bench.compare --stations 1000 --duration 30 --processes 2 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import usage
from bench.load import Plan, percentile, run

OCPP_PORT = 9300
HTTP_PORT = 8300
READY_SECONDS = 90


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise SystemExit(f"the server did not listen on {port} within {READY_SECONDS} s")


@contextlib.contextmanager
def _running(command: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log)
        time.sleep(2.0)  # lets the projections and the journal settle in
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _targets(args: argparse.Namespace, work: Path) -> dict[str, list[str]]:
    csms = [sys.executable, "-m", "adapters.cli", "serve", "--log-level", "WARNING"]
    csms += ["--ocpp-port", str(OCPP_PORT), "--http-port", str(HTTP_PORT)]
    csms += ["--workers", str(args.workers)]
    if args.database_url:
        csms += ["--database-url", args.database_url]
    return {
        "csms": [*csms, "--data-dir", str(work / "csms")],
        "store": [*csms, "--data-dir", str(work / "store"), "--projections", "elsewhere"],
        "memory": [*csms, "--data-dir", str(work / "memory"), "--store", "memory"],
        "bare": [sys.executable, "-m", "bench.bare_server", "--port", str(OCPP_PORT)],
    }


def main() -> None:
    args = _parser().parse_args()
    plan = Plan(
        url=f"ws://127.0.0.1:{OCPP_PORT}",
        scenario="steady",
        stations=args.stations,
        processes=args.processes,
        share_201=args.share_201,
        duration=args.duration,
        rate=args.rate,
        ramp=args.stations / 500,
        warmup=args.warmup,
        window=0,
        hold=0,
        meter_values=4,
        heartbeat=60,
        timeout=30,
        prefix="",
    )
    figures: dict[str, tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="csms-compare-") as folder:
        work = Path(folder)
        for name, command in _targets(args, work).items():
            if name not in args.only:
                continue
            print(f"== {name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
            with _running(command, OCPP_PORT, work / f"{name}.log"):
                run_plan = Plan(**{**plan.__dict__, "prefix": f"C{os.getpid()}{name[0]}"})
                # Timed before each load: the ratios mean little if the machine's speed
                # changed between the targets.
                loop_us = usage.loop_microseconds()
                totals = run(run_plan, [])
            state = totals.window_latencies.get("state", [])
            figures[name] = (len(state) / plan.duration, percentile(state, 0.99), loop_us)
    print(f"{'target':<8} {'state-changing msg/s':>21} {'p99':>10} {'machine speed':>15}")
    for name, (rate, p99, loop_us) in figures.items():
        print(f"{name:<8} {rate:>21.0f} {p99 * 1000:>8.1f} ms {loop_us:>12.1f} us")
    print("(machine speed: sum(range(1000)) timed before each load; only like speeds compare)")
    for ours, reference, floor in (
        ("csms", "memory", 0.67),
        ("csms", "bare", 0.8),
        ("store", "memory", 0.67),  # durable storage alone, the views fed elsewhere
    ):
        if ours in figures and figures.get(reference, (0.0, 0.0, 0.0))[0]:
            ratio = figures[ours][0] / figures[reference][0]
            verdict = "PASS" if ratio >= floor else "FAIL"
            print(f"  {verdict}  {ours} / {reference} = {ratio:.2f} (>= {floor})")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--duration", type=float, default=30, help="seconds measured per target")
    p.add_argument(
        "--warmup", type=float, default=10, help="seconds before measuring (the boots settle)"
    )
    p.add_argument("--rate", type=float, default=0, help="msg/s offered (0: unpaced)")
    p.add_argument("--processes", type=int, default=2, help="load processes")
    p.add_argument("--share-201", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=2, help="csms worker processes")
    p.add_argument("--database-url", help="run csms on this database instead of an embedded one")
    p.add_argument(
        "--only",
        nargs="+",
        default=["csms", "store", "memory", "bare"],
        choices=["csms", "store", "memory", "bare"],
        help="targets to run",
    )
    return p


if __name__ == "__main__":
    main()
