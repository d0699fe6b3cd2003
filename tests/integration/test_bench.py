"""The load generator's simulated stations: against the CSMS, and against servers that refuse,
hang up or never answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bench import load, readside, server_metrics, usage
from bench.sim import Station, Tally
from tests.support import ServerProcess

Handler = Callable[[ServerConnection], Awaitable[None]]


async def test_simulated_stations_run_transactions_that_the_read_side_shows(
    shared_server: ServerProcess,
) -> None:
    tally = Tally()
    base_url = shared_server.ocpp_url("").rstrip("/")
    give_up_at = time.time() + 30
    for protocol in ("ocpp1.6", "ocpp2.0.1"):
        station = Station(base_url, f"BENCH-{protocol}", protocol, tally, timeout=10)
        assert await station.connect(give_up_at)
        assert await station.boot(give_up_at)
        await station.status("Available")
        await station.transaction(meter_values=2, pause=0.0, started_at=datetime.now(UTC))
        await station.heartbeat()
        await station.close()
    assert not tally.errors, tally.errors
    assert tally.connected == 0
    assert {kind: len(seconds) for kind, seconds in tally.latencies.items()} == {
        "boot": 2,
        "state": 2 + 2 * 4,  # a status, then start, two meter values and stop, each
        "other": 2,
    }
    assert [ran.energy_wh for ran in tally.transactions] == [500, 500]
    report = await readside.check(
        shared_server.http_url(), shared_server.token("operator"), tally.transactions, []
    )
    assert len(report) == 1 and "2/2 transactions shown and correct" in report[0], report


async def _accept_boots(websocket: ServerConnection) -> None:
    async for text in websocket:
        message_id = json.loads(text)[1]
        answer = {"status": "Accepted", "currentTime": "2026-01-01T00:00:00Z", "interval": 60}
        await websocket.send(json.dumps([3, message_id, answer]))


@asynccontextmanager
async def _server(
    handler: Handler,
    refuse: Callable[[ServerConnection, Request], Response | None] = lambda *_: None,
) -> AsyncIterator[str]:
    """A WebSocket server on a free port, as the base URL stations connect to."""
    async with serve(handler, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_a_station_told_to_come_back_later_connects_after_retry_after() -> None:
    refused: list[str] = []

    def refuse_once(connection: ServerConnection, request: Request) -> Response | None:
        if refused:
            return None
        refused.append(request.path)
        response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "busy\n")
        response.headers["Retry-After"] = "1"
        return response

    tally = Tally()
    async with _server(_accept_boots, refuse_once) as url:
        station = Station(url, "CP-BUSY", "ocpp1.6", tally, timeout=5)
        began = time.monotonic()
        assert await station.connect(give_up_at=time.time() + 30)
        waited = time.monotonic() - began
        assert await station.boot(give_up_at=time.time() + 30)
        await station.close()
    assert refused == ["/CP-BUSY"]
    assert waited >= 1.0
    assert tally.notes["connections refused with 503, then retried"] == 1
    assert not tally.errors, tally.errors


async def test_a_refusal_without_retry_after_is_counted_and_given_up() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(HTTPStatus.NOT_FOUND, "no such station\n")

    tally = Tally()
    async with _server(_accept_boots, refuse) as url:
        station = Station(url, "CP-UNKNOWN", "ocpp1.6", tally, timeout=5)
        assert not await station.connect(give_up_at=time.time() + 30)
    assert tally.errors == {"connect refused (404)": 1}
    assert tally.connected == 0


async def test_a_connection_the_server_closes_ends_the_station_with_its_close_code() -> None:
    async def hang_up(websocket: ServerConnection) -> None:
        await websocket.recv()
        await websocket.close(1011, "going away")

    async with _server(hang_up) as url:
        station = Station(url, "CP-DROPPED", "ocpp1.6", Tally(), timeout=5)
        assert await station.connect(give_up_at=time.time() + 30)
        with pytest.raises(ConnectionClosed) as closed:
            await station.heartbeat()
        await station.close()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_an_unanswered_call_is_counted_as_a_timeout() -> None:
    async def never_answer(websocket: ServerConnection) -> None:
        await asyncio.sleep(5)

    tally = Tally()
    async with _server(never_answer) as url:
        station = Station(url, "CP-SILENT", "ocpp1.6", tally, timeout=0.3)
        assert await station.connect(give_up_at=time.time() + 30)
        await station.heartbeat()
        await station.close()
    assert tally.errors == {"timeout Heartbeat": 1}
    assert "other" not in tally.latencies


def test_the_load_reports_the_cores_a_local_server_used(shared_server: ServerProcess) -> None:
    url = shared_server.ocpp_url("").rstrip("/")
    load = ["--stations", "4", "--ramp", "0.1", "--warmup", "1", "--duration", "4"]
    load += ["--metrics", shared_server.http_url("/metrics")]
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--url", url, *load],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = re.search(r"CPU \(cores\) +server ([\d.]+), this load ([\d.]+),", done.stdout)
    assert found, done.stdout
    assert float(found[1]) > 0 and float(found[2]) > 0, done.stdout
    assert re.search(r"server [\d.]+ cores per 1,000 msg/s answered", done.stdout), done.stdout
    # Which interpreter ran each: the server here is this test's own.
    python = os.path.realpath(sys.executable)
    assert f"interpreters    this load {python} (" in done.stdout, done.stdout
    assert f"; server {python}\n" in done.stdout, done.stdout
    # And how fast the machine was, timed before the load began.
    speed = re.search(r"machine speed +sum\(range\(1000\)\) in ([\d.]+) us", done.stdout)
    assert speed and float(speed[1]) > 0, done.stdout
    # And the server's own count of its answer times, from its /metrics, over the same window.
    own = re.search(r"\n  server +(\d+)  p50 +([\d.]+) ms .* p99 +([\d.]+) ms", done.stdout)
    assert own and int(own[1]) > 0 and 0 < float(own[2]) <= float(own[3]), done.stdout


def test_the_server_s_quantiles_are_interpolated_within_its_buckets() -> None:
    first = {0.01: 10.0, 0.02: 10.0, float("inf"): 10.0}  # counted before the window
    last = {0.01: 60.0, 0.02: 110.0, float("inf"): 110.0}  # 50 under 10 ms, 50 under 20 ms
    assert server_metrics.quantile(first, last, 0.5) == 0.01
    assert server_metrics.quantile(first, last, 0.99) == pytest.approx(0.0198)
    beyond = {0.01: 60.0, 0.02: 60.0, float("inf"): 110.0}  # half slower than the last bound
    assert server_metrics.quantile(first, beyond, 0.99) == 0.02
    assert server_metrics.quantile(last, last, 0.5) is None  # nothing counted in the window


def test_the_cores_used_are_the_cpu_time_over_the_time_between_samples() -> None:
    first = usage.Sample(at=100.0, answered=0, server=10.0, load=5.0, machine=20.0)
    last = usage.Sample(at=110.0, answered=20_000, server=20.0, load=8.0, machine=40.0)
    lines = usage.cpu_report(first, last, server_known=True)
    assert lines[0].startswith("CPU (cores)     server 1.00, this load 0.30, the rest of the")
    assert "the rest of the machine 0.70, of " in lines[0] and "(over 10 s)" in lines[0]
    assert lines[1] == "  server 0.50 cores per 1,000 msg/s answered"  # 2,000 msg/s
    # A remote server: no process of it here, its cores count for nothing.
    remote = usage.cpu_report(replace(first, server=0), replace(last, server=0), False)
    assert remote == [lines[0].replace("server 1.00, ", "").replace("0.70", "1.70")]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_the_load_processes_stop_when_the_load_is_killed(shared_server: ServerProcess) -> None:
    url = shared_server.ocpp_url("").rstrip("/")
    load = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--url", url, "--stations", "4", "--processes", "2"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while len(shards := _children(load.pid)) < 3:  # two load processes, and the tracker
        assert time.monotonic() < deadline, "the load processes did not start"
        time.sleep(0.1)
    load.kill()  # as a script or CI stops it: no Ctrl-C reaches its process group
    load.wait()
    deadline = time.monotonic() + 10
    while alive := [pid for pid in shards if Path(f"/proc/{pid}").exists()]:
        for pid in alive:  # reap any that ended as our zombies
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        assert time.monotonic() < deadline, f"load processes {alive} outlived the load"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("stations", "share", "expected"),
    [(4, 0.5, 2), (10, 0.3, 3), (50, 0.5, 25), (7, 0.0, 0), (7, 1.0, 7)],
)
def test_the_share_of_2_0_1_stations_holds_for_any_number_of_stations(
    stations: int, share: float, expected: int
) -> None:
    plan = load.Plan(
        url="ws://127.0.0.1:9000", scenario="steady", stations=stations, processes=1,
        share_201=share, duration=1, rate=0, ramp=0, warmup=0, window=1, hold=0,
        meter_values=1, heartbeat=60, timeout=1, prefix="P",
    )  # fmt: skip
    protocols = [protocol for _, _, protocol in plan.station_ids(0)]
    assert protocols.count("ocpp2.0.1") == expected
    assert protocols.count("ocpp1.6") == stations - expected


def test_a_read_side_or_metrics_it_cannot_read_stops_the_load_before_it_runs(
    shared_server: ServerProcess,
) -> None:
    url = shared_server.ocpp_url("").rstrip("/")
    load = [sys.executable, "-m", "bench.load", "--url", url, "--stations", "2", "--duration", "60"]
    graphql = ["--graphql", shared_server.http_url(), "--token", "not-a-token"]
    done = subprocess.run([*load, *graphql], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr
    assert "--graphql" in done.stderr and "give --token a token" in done.stderr, done.stderr
    assert "connected" not in done.stderr  # no load ran
    metrics = ["--metrics", shared_server.http_url("/no-metrics-here")]
    done = subprocess.run([*load, *metrics], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "--metrics" in done.stderr and "404" in done.stderr
