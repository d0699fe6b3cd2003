"""Billing systems read finished sessions, priced, once each, in order; corrections are new
versions; the same rows come from GraphQL, a PostgreSQL view and exports; a rebuilt
projection gives exactly what incremental processing gave."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201
from psycopg.rows import dict_row

from projections.billing import SAMPLES_KEPT
from tests.stations import connect, energy, energy2
from tests.support import (
    ServerProcess,
    eventually,
    graphql,
    graphql_response,
    projection_tables,
)

BASE = (datetime.now(UTC) + timedelta(minutes=10)).replace(second=0, microsecond=0)
SESSION = """{ cursor sessionId version latest reason stationId transactionId evseId idToken
    startedAt stoppedAt energyWh energyKwh durationSeconds chargingSeconds idleSeconds
    tariffName tariffVersion currency energyCost chargingTimeCost idleCost sessionFee subtotal
    taxRate tax total }"""
FEED = f"""query($after: String, $first: Int!) {{
    chargingSessions(after: $after, first: $first) {{ sessions {SESSION} endCursor hasMore }}
}}"""


def at(minutes: float) -> str:
    return (BASE + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    """The module's one server (and database), under the name these tests give it."""
    return shared_server


async def tariff(server: ServerProcess, mutation: str) -> dict[str, Any]:
    data = await graphql(
        server, f"mutation {{ t: {mutation} {{ id name prices {{ energyPerKwh }} }} }}"
    )
    return dict(data["t"])


async def feed(server: ServerProcess, after: str | None = None, page: int = 3) -> list[Any]:
    """Every session version after the cursor, page by page, as a billing system reads it."""
    found: list[Any] = []
    while True:
        data = (await graphql(server, FEED, "billing", after=after, first=page))["chargingSessions"]
        found += data["sessions"]
        if not data["hasMore"]:
            return found
        after = data["endCursor"]


async def session_of(server: ServerProcess, station_id: str, versions: int = 1) -> list[Any]:
    rows = await eventually(
        lambda: feed(server),
        lambda rows: len([r for r in rows if r["stationId"] == station_id]) >= versions,
    )
    return [r for r in rows if r["stationId"] == station_id]


STANDARD = (
    'createTariff(name: "Standard", currency: "EUR", prices: {energyPerKwh: "0.30", '
    'chargingPerMinute: "0.01", idlePerMinute: "0.10", sessionFee: "0.50", taxRate: "0.19"})'
)


async def test_sessions_are_priced_by_the_tariff_in_force_when_they_started(
    server: ServerProcess,
) -> None:
    standard = await tariff(server, STANDARD)
    await tariff(
        server,
        'createTariff(name: "Fast", currency: "EUR", stationIds: ["CS-FAST"], '
        'prices: {energyPerKwh: "0.59", taxRate: "0.19"})',
    )
    await tariff(
        server,
        f'changeTariffPrices(id: "{standard["id"]}", effectiveFrom: "{at(240)}", '
        'prices: {energyPerKwh: "0.40", sessionFee: "1.00", taxRate: "0.19"})',
    )
    async with connect(server, "CS-STD", "ocpp1.6") as old:
        tx = await old.start(1, "TAG-1", 1000, at(0))
        await old.meter(tx, 1, at(30), "6000", "Wh")
        await old.meter(tx, 1, at(45), "11.0", "kWh")  # the same meter, now in kWh
        await old.stop(tx, 1, 11000, at(60), "Local", None)
        later = await old.start(1, "TAG-1", 11000, at(300))  # after the price change
        await old.stop(tx=later, evse=1, meter_wh=16000, at=at(330), reason="Local", token=None)
    async with connect(server, "CS-FAST", "ocpp2.0.1") as new:
        fast_tx = await new.start(1, "TAG-2", 500, at(0))
        await new.meter(fast_tx, 1, at(20), "20.5", "kWh")
        await new.stop(fast_tx, 1, 40500, at(40), "EVDisconnected", None)

    first, second = await session_of(server, "CS-STD", versions=2)
    assert (first["energyWh"], first["chargingSeconds"], first["idleSeconds"]) == (
        "10000.0",
        45 * 60,
        15 * 60,
    )
    assert first["tariffName"] == "Standard" and first["tariffVersion"] == 1
    assert [first[k] for k in ("energyCost", "chargingTimeCost", "idleCost", "sessionFee")] == [
        "3.00",
        "0.45",
        "1.50",
        "0.50",
    ]
    assert (first["subtotal"], first["tax"], first["total"]) == ("5.45", "1.04", "6.49")
    assert (second["tariffVersion"], second["energyCost"], second["sessionFee"]) == (
        2,
        "2.00",
        "1.00",
    )
    [fast] = await session_of(server, "CS-FAST")
    assert (fast["tariffName"], Decimal(fast["energyKwh"]), fast["energyCost"]) == (
        "Fast",
        Decimal(40),
        "23.60",
    )
    assert (fast["currency"], fast["total"]) == ("EUR", "28.08")


async def test_a_late_event_makes_a_new_version_with_its_reason(server: ServerProcess) -> None:
    await tariff(server, STANDARD.replace("Standard", "Late"))  # any tariff: costs must move
    async with connect(server, "CS-LATE", "ocpp2.0.1") as station:
        events = [
            (0, "Started", at(0), [energy2(at(0), 0, context="Transaction.Begin")]),
            (2, "Ended", at(60), [energy2(at(60), 10000, context="Transaction.End")]),
            (1, "Updated", at(30), [energy2(at(30), 10000)]),  # queued offline, came late
        ]
        for seq_no, kind, moment, meter in events:
            await station.send(
                call201.TransactionEvent(
                    event_type=kind,
                    timestamp=moment,
                    trigger_reason="MeterValuePeriodic",
                    seq_no=seq_no,
                    transaction_info={"transactionId": "TX-LATE"},
                    evse={"id": 1, "connectorId": 1},
                    meter_value=meter,
                    offline=seq_no == 1,
                )
            )
    async with connect(server, "CS-LATE-16", "ocpp1.6") as old:
        tx = await old.start(1, "TAG-3", 0, at(0))
        await old.stop(tx, 1, 5000, at(60), "Local", None)
        await old.send(  # meter values the station sends after the stop, from its queue
            call16.MeterValues(
                connector_id=1, transaction_id=int(tx), meter_value=[energy(at(20), "5000")]
            )
        )
    ended, corrected = await session_of(server, "CS-LATE", versions=2)
    assert (ended["version"], ended["reason"], ended["latest"]) == (1, "ended", False)
    assert (ended["chargingSeconds"], ended["idleSeconds"]) == (3600, 0)
    assert corrected["version"] == 2 and corrected["latest"]
    assert corrected["reason"] == "event 1 (Updated) came after the end"
    assert (corrected["chargingSeconds"], corrected["idleSeconds"]) == (1800, 1800)
    assert Decimal(corrected["energyWh"]) == Decimal(ended["energyWh"]) == 10000
    assert int(corrected["cursor"]) > int(ended["cursor"])
    v1, v2 = await session_of(server, "CS-LATE-16", versions=2)
    assert (v2["reason"], v2["idleSeconds"], v1["idleSeconds"]) == (
        "meter values came late",
        2400,
        0,
    )


async def test_the_feed_gives_each_version_once_in_order_even_while_sessions_finish(
    server: ServerProcess,
) -> None:
    before = await feed(server)
    cursor = before[-1]["cursor"] if before else None
    seen: list[Any] = []
    done = asyncio.Event()

    async def billing_system() -> None:
        after = cursor
        while True:
            finished = done.is_set()
            data = await graphql(server, FEED, "billing", after=after, first=2)
            page = data["chargingSessions"]
            seen.extend(page["sessions"])
            after = page["endCursor"]
            if finished and not page["hasMore"]:
                return
            await asyncio.sleep(0.05)

    async def session(n: int) -> None:
        async with connect(server, f"CS-MANY-{n}", "ocpp1.6") as station:
            tx = await station.start(1, f"TAG-M{n}", 0, at(n))
            await station.stop(tx, 1, 1000 * (n + 1), at(n + 30), "Local", None)

    reader = asyncio.create_task(billing_system())
    await asyncio.gather(*(session(n) for n in range(8)))
    await eventually(lambda: feed(server, cursor), lambda rows: len(rows) >= 8)
    done.set()
    await reader
    positions = [int(row["cursor"]) for row in seen]
    assert positions == sorted(set(positions)), "each version once, in feed order"
    assert {row["stationId"] for row in seen} == {f"CS-MANY-{n}" for n in range(8)}
    assert await feed(server, cursor) == await feed(server, cursor, page=5)  # read again: same
    [last] = (await graphql(server, FEED, "billing", after=str(positions[-1]), first=5))[
        "chargingSessions"
    ]["sessions"] or [None]
    assert last is None


async def test_the_view_the_csv_and_the_ocpi_cdrs_say_what_the_feed_says(
    server: ServerProcess, tmp_path: Any
) -> None:
    await session_of(server, "CS-STD", versions=2)
    rows = await feed(server)
    assert server.database_url
    with psycopg.connect(server.database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM billing_feed ORDER BY feed_position")
        view = cur.fetchall()
    assert [str(r["feed_position"]) for r in view] == [r["cursor"] for r in rows]
    assert [str(r["total"]) if r["total"] is not None else None for r in view] == [
        r["total"] for r in rows
    ]

    period = ["--from", (BASE - timedelta(days=1)).isoformat(), "--to", at(24 * 60)]
    text = csms(server, "export", "sessions", *period, "--format", "csv")
    exported = list(csv.DictReader(io.StringIO(text)))
    latest = [r for r in rows if r["latest"]]
    assert len(exported) == len(latest)
    standard = next(r for r in exported if r["station_id"] == "CS-STD" and r["total"] == "6.49")
    assert (standard["total"], standard["currency"], standard["idle_seconds"]) == (
        "6.49",
        "EUR",
        "900",
    )

    locations = tmp_path / "locations.json"
    locations.write_text(
        json.dumps(
            {"CS-STD": {"name": "Depot", "address": "Kade 1", "city": "Utrecht", "country": "NLD"}}
        )
    )
    cdrs = json.loads(
        csms(
            server,
            "export",
            "sessions",
            *period,
            "--format",
            "ocpi",
            "--country-code",
            "NL",
            "--party-id",
            "CSM",
            "--locations",
            str(locations),
        )
    )
    assert len(cdrs) == len([r for r in latest if r["currency"]])
    for cdr in cdrs:
        check_cdr(cdr)
    depot = next(c for c in cdrs if c["cdr_location"]["id"] == "CS-STD")
    assert depot["cdr_location"]["city"] == "Utrecht"
    assert depot["total_cost"]["incl_vat"] > depot["total_cost"]["excl_vat"]


async def test_billing_roles(server: ServerProcess) -> None:
    refused = await graphql_response(
        server, STANDARD.join(["mutation { ", " { id } }"]), server.token("billing")
    )
    assert "billing role may not" in refused["errors"][0]["message"]
    wrong = await graphql_response(server, "{ stations { id } }", server.token("billing"))
    assert "errors" in wrong
    assert "chargingSessions" in (await graphql(server, FEED, "auditor", first=1))


async def test_a_session_longer_than_memory_keeps_is_priced_from_every_sample(
    server: ServerProcess,
) -> None:
    """More samples than the projection keeps in memory, a meter reset among them."""
    await tariff(server, STANDARD.replace("Standard", "Long"))
    long = SAMPLES_KEPT + 20
    async with connect(server, "CS-LONG", "ocpp1.6") as station:
        tx = await station.start(1, "TAG-L", 0, at(0))
        for minute in range(1, long + 1):
            wh = 100 * minute if minute < 50 else 100 * (minute - 50)  # reset at minute 50
            await station.meter(tx, 1, at(minute), str(wh), "Wh")
        last = 100 * (long - 50)
        await station.stop(tx, 1, last, at(long + 10), "Local", None)
        await station.send(  # a late sample: a new version, priced from every sample again
            call16.MeterValues(
                connector_id=1,
                transaction_id=int(tx),
                meter_value=[energy(at(long + 5), str(last + 500))],
            )
        )
    ended, corrected = await session_of(server, "CS-LONG", versions=2)
    assert Decimal(ended["energyWh"]) == 4900 + last
    assert (ended["chargingSeconds"], ended["idleSeconds"]) == (long * 60, 10 * 60)
    assert Decimal(corrected["energyWh"]) == 4900 + last + 500
    assert (corrected["chargingSeconds"], corrected["idleSeconds"]) == ((long + 5) * 60, 5 * 60)


async def test_a_rebuild_gives_exactly_what_incremental_processing_gave(
    server: ServerProcess,
) -> None:
    async with connect(server, "CS-REBUILD", "ocpp1.6") as station:
        tx = await station.start(1, "TAG-R", 0, at(0))
        await station.stop(tx, 1, 2000, at(10), "Local", None)
    await session_of(server, "CS-REBUILD")
    listing = await eventually(
        lambda: asyncio.to_thread(csms, server, "projections"),
        lambda text: all(re.search(rf"^{name}\s+\d+\s+0\s", text, re.M) for name in PROJECTIONS),
    )
    assert "on a server" in listing
    before = snapshot(server)
    assert before["charging_sessions"], "something to compare"
    replayed = {}
    for name in PROJECTIONS:
        progress = csms(server, "projections", "rebuild", name, stderr=True)
        found = re.search(rf"rebuilt {name}: (\d+) events", progress)
        assert found and "[" + "#" * 30 + "]" in progress, progress
        replayed[name] = int(found[1])
    assert replayed["billing"] > 0 and replayed["transactions"] > 0
    assert snapshot(server) == before
    assert server.database_url
    # The database may also be named before the action.
    command = [sys.executable, "-m", "adapters.cli", "projections", "--database-url",
               server.database_url, "rebuild", "id_tokens"]  # fmt: skip
    environment = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    named_first = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=300, env=environment
    )
    assert "rebuilt id_tokens" in named_first.stderr, named_first.stderr
    with psycopg.connect(server.database_url) as conn:
        asked = conn.execute("SELECT name FROM projection_rebuilds WHERE started_at IS NOT NULL")
        assert {row[0] for row in asked} == set(PROJECTIONS)  # the server did each one


PROJECTIONS = (
    "station_status", "transactions", "device_model", "remote_commands", "id_tokens", "billing",
    "event_log",
)  # fmt: skip


def snapshot(server: ServerProcess) -> dict[str, list[str]]:
    assert server.database_url
    return projection_tables(server.database_url)


def csms(server: ServerProcess, *args: str, stderr: bool = False) -> str:
    done = server.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stderr if stderr else done.stdout


# --- OCPI 2.2.1 CDR field rules (module CDRs, object CDR) ---------------------------------------

DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DIMENSIONS = {
    "CURRENT",
    "ENERGY",
    "ENERGY_EXPORT",
    "ENERGY_IMPORT",
    "MAX_CURRENT",
    "MIN_CURRENT",
    "MAX_POWER",
    "MIN_POWER",
    "PARKING_TIME",
    "POWER",
    "RESERVATION_TIME",
    "STATE_OF_CHARGE",
    "TIME",
}


def check_cdr(cdr: dict[str, Any]) -> None:
    def string(value: Any, most: int) -> None:
        assert isinstance(value, str) and 0 < len(value) <= most, (value, most)

    def number(value: Any) -> None:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), value
        assert Decimal(str(value)).as_tuple().exponent >= -4  # type: ignore[operator]

    def price(value: Any) -> None:
        assert set(value) <= {"excl_vat", "incl_vat"} and "excl_vat" in value
        for amount in value.values():
            number(amount)

    required = {
        "country_code",
        "party_id",
        "id",
        "start_date_time",
        "end_date_time",
        "cdr_token",
        "auth_method",
        "cdr_location",
        "currency",
        "charging_periods",
        "total_cost",
        "total_energy",
        "total_time",
        "last_updated",
    }
    assert required <= set(cdr), required - set(cdr)
    assert re.fullmatch(r"[A-Z]{2}", cdr["country_code"]) and len(cdr["party_id"]) == 3
    string(cdr["id"], 39)
    string(cdr["session_id"], 36)
    for moment in (cdr["start_date_time"], cdr["end_date_time"], cdr["last_updated"]):
        assert DATETIME.match(moment), moment
    assert cdr["start_date_time"] <= cdr["end_date_time"]
    token = cdr["cdr_token"]
    string(token["uid"], 36)
    string(token["contract_id"], 36)
    assert token["type"] in {"AD_HOC_USER", "APP_USER", "OTHER", "RFID"}
    assert cdr["auth_method"] in {"AUTH_REQUEST", "COMMAND", "WHITELIST"}
    location = cdr["cdr_location"]
    for name, most in (
        ("id", 36),
        ("address", 45),
        ("city", 45),
        ("evse_uid", 36),
        ("evse_id", 48),
        ("connector_id", 36),
    ):
        string(location[name], most)
    assert re.fullmatch(r"[A-Z]{3}", location["country"])
    for axis, pattern in (
        ("latitude", r"-?[0-9]{1,2}\.[0-9]{5,7}"),
        ("longitude", r"-?[0-9]{1,3}\.[0-9]{5,7}"),
    ):
        assert re.fullmatch(pattern, location["coordinates"][axis])
    assert location["connector_format"] in {"SOCKET", "CABLE"}
    assert location["connector_power_type"] in {
        "AC_1_PHASE",
        "AC_2_PHASE",
        "AC_2_PHASE_SPLIT",
        "AC_3_PHASE",
        "DC",
    }
    assert re.fullmatch(r"[A-Z]{3}", cdr["currency"])
    assert cdr["charging_periods"], "at least one charging period"
    for period in cdr["charging_periods"]:
        assert DATETIME.match(period["start_date_time"])
        assert period["dimensions"]
        for dimension in period["dimensions"]:
            assert dimension["type"] in DIMENSIONS
            number(dimension["volume"])
    for name in (
        "total_cost",
        "total_fixed_cost",
        "total_energy_cost",
        "total_time_cost",
        "total_parking_cost",
    ):
        if name in cdr:
            price(cdr[name])
    for name in ("total_energy", "total_time", "total_parking_time"):
        number(cdr[name])
    assert cdr["total_cost"]["incl_vat"] >= cdr["total_cost"]["excl_vat"]
