"""/metrics: what the server counts, summed over its worker processes, for Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable

import httpx
import psycopg
import websockets
from ocpp.v16 import call
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.support import ServerProcess, eventually, offer, station16

# Stations held open: the kernel spreads them over both workers (all on one: 2 in 65,536).
HELD = 16

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(server: ServerProcess) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(server.http_url("/metrics"), timeout=30)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_every_worker_s_requests_are_counted_whichever_answers_the_scrape(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url, "--workers", "2")
    await eventually(
        lambda: asyncio.to_thread(server.log), lambda log: log.count("CSMS ready") == 2
    )
    boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(station16(server, f"CP-M{i}")) for i in range(HELD)]
        await asyncio.gather(*(cp.call(boot) for cp in held))
        # The kernel gave both workers stations: each counted its own.
        nodes = await eventually(
            lambda: asyncio.to_thread(_stations_by_node, database_url),
            lambda n: len(n) == 2 and sum(n.values()) == HELD,
        )
        for _ in range(4):  # each scrape reaches either worker; both add up the two
            samples = await _scrape(server)
            boots = {"version": "1.6", "action": "BootNotification"}
            assert _value(samples, "csms_ocpp_requests_total", outcome="answered", **boots) == HELD
            assert _value(samples, "csms_ocpp_answer_seconds_count", **boots) == HELD
            assert _value(samples, "csms_ocpp_answer_seconds_bucket", le="+Inf", **boots) == HELD
            assert _value(samples, "csms_station_connections") == HELD
            assert _value(samples, "csms_writer_commands_total") >= 2 * HELD  # connect, boot

        # An action no version has is counted under one name, however many a station invents.
        async with websockets.connect(server.ocpp_url("CP-X"), subprotocols=offer("ocpp1.6")) as ws:
            await ws.send(json.dumps([2, "x1", "NoSuchAction", {}]))
            assert json.loads(await ws.recv())[2] == "NotImplemented"
            await ws.send("not JSON")
            assert json.loads(await ws.recv())[2] == "FormationViolation"
        with contextlib.suppress(InvalidStatus):
            async with websockets.connect(server.ocpp_url(""), subprotocols=offer("ocpp1.6")):
                pass
        samples = await _scrape(server)
        unknown = {"version": "1.6", "action": "unknown", "outcome": "refused"}
        assert _value(samples, "csms_ocpp_requests_total", **unknown) == 1
        assert not any("NoSuchAction" in str(labels) for _, labels in samples)
        assert _value(samples, "csms_ocpp_bad_frames_total", version="1.6") == 1
        refused = {"reason": "invalid identity"}
        assert _value(samples, "csms_station_connections_refused_total", **refused) == 1
        # Each projection's standing, as the worker running it last read: caught up with the
        # store (event_log takes every event).
        stored = await asyncio.to_thread(_last_event, database_url)
        await eventually(
            lambda: _scrape(server),
            lambda s: (
                _value(s, "csms_projection_position", projection="event_log") >= stored
                and _value(s, "csms_projection_events_behind", projection="event_log") == 0
                and _value(s, "csms_projection_position", projection="station_status") > 0
            ),
        )

        # A worker that dies takes its stations' connections with it, and out of the figures.
        victim, survivor = sorted(nodes)
        os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
        await eventually(
            lambda: _scrape(server),
            lambda s: _value(s, "csms_station_connections") == nodes[survivor],
        )
    # Its replacement starts; once it is up, the server stops cleanly.
    await eventually(
        lambda: asyncio.to_thread(server.log), lambda log: log.count("CSMS ready") == 3
    )
    assert server.stop() == 0


def _stations_by_node(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT node, count(*) FROM station_status WHERE connected GROUP BY node"
        ).fetchall()
    return {node: count for node, count in rows}


def _last_event(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT max(notification_id) FROM csms_events").fetchone()
    assert row is not None
    return int(row[0])
