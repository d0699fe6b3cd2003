"""The batching projection runner: a batch that fails leaves neither rows nor memory behind, and
what a batch holds back is in place before it reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from adapters.postgres import eventsourcing_env, open_store
from adapters.projection_runner import BatchRunner
from adapters.server import ensure_views
from domain.commands import (
    ChangeConnectorStatus,
    ConnectStation,
    RecordBoot,
    RecordMeterValues,
    StartTransaction,
    StopTransaction,
)
from domain.meter import MeterReading, SampledValue
from domain.operator_commands import CreateTariff
from domain.station import ChargingStation
from domain.tariffs import Prices
from domain.transaction import Transaction
from projections import queries
from projections.base import STAGED_BEFORE_TRUNCATE, Kept
from projections.billing import BillingProjection, BillingView
from projections.event_log import EventLogProjection, EventLogView
from projections.station_status import StationStatusProjection, StationStatusView
from projections.transactions import TransactionsProjection, TransactionsView
from tests.domain.test_transaction_events import T0 as EVENT_T0
from tests.domain.test_transaction_events import event as tx_event
from tests.domain.test_transaction_events import register

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Interrupted(Exception):
    pass


def _start(station_id: str) -> StartTransaction:
    return StartTransaction(
        station_id=station_id,
        fingerprint="fp-1",
        evse_id=1,
        connector_id=1,
        id_token="TAG",
        meter_start_wh=1_000,
        started_at=T0,
        reservation_id=None,
        readings=[],
        received_at=T0,
    )


def _stop(station_id: str, key: str) -> StopTransaction:
    return StopTransaction(
        station_id=station_id,
        transaction_key=key,
        stopped_at=T0 + timedelta(hours=1),
        meter_stop_wh=5_500,
        reason=None,
        id_token=None,
        readings=[],
        received_at=T0 + timedelta(hours=1),
    )


def _stored(app: Any) -> list[tuple[int, Any]]:
    stored = app.recorder.select_notifications(start=1, limit=100)
    return [(n.id, app.mapper.to_domain_event(n)) for n in stored]


def _views(database_url: str) -> dict[str, str]:
    """The settings of a store whose views' tables are made."""
    env = eventsourcing_env(database_url)
    ensure_views(database_url, env)
    return env


def _store(database_url: str, commands: Iterable[Any]) -> list[tuple[int, Any]]:
    """Runs the commands on the store; its events with their positions."""
    app = open_store(database_url)
    try:
        for command in commands:
            app.execute(command)
        return _stored(app)
    finally:
        app.close()


def _store_a_finished_session(database_url: str) -> list[tuple[int, Any]]:
    """Its events with their positions."""
    app = open_store(database_url)
    try:
        started = app.execute(_start("CS-1"))
        app.execute(_stop("CS-1", started.transaction_key))
        return _stored(app)
    finally:
        app.close()


def _start_then_fail(runner: BatchRunner, stored: list[tuple[int, Any]]) -> None:
    """Applies the events up to the start, then the rest in a batch that fails to commit."""
    start = next(position for position, event in stored if isinstance(event, Transaction.Started))
    runner.step(until=start)
    rest = [(position, event) for position, event in stored if position > start]
    assert rest, "the stop comes after the start"
    with pytest.raises(Interrupted), runner.view.batch():
        for position, event in rest:
            runner.projection.process_event(event, Tracking("CSMS", position))
        raise Interrupted


def test_a_failed_batch_is_applied_again_in_full(database_url: str) -> None:
    stored = _store_a_finished_session(database_url)
    env = _views(database_url)
    with BatchRunner(env, BillingProjection, BillingView) as billing:
        _start_then_fail(billing, stored)
        while billing.step():
            pass
    with BatchRunner(env, TransactionsProjection, TransactionsView) as transactions:
        _start_then_fail(transactions, stored)
        while transactions.step():
            pass
    with psycopg.connect(database_url) as conn:
        priced = conn.execute("SELECT version, energy_wh FROM charging_sessions").fetchall()
        shown = conn.execute("SELECT energy_wh, stopped_at FROM transactions").fetchall()
    assert priced == [(1, 4_500)]
    assert shown == [(4_500, T0 + timedelta(hours=1))]


def test_a_session_forgotten_within_a_batch_is_read_back_as_the_batch_left_it(
    database_url: str,
) -> None:
    """Billing holds a session's row update back to the end of the batch; a read of the row
    in between (the session fell out of memory) must see it."""
    app = open_store(database_url)
    try:
        first = app.execute(_start("CS-A")).transaction_key
        app.execute(_stop("CS-A", first))
        app.execute(_start("CS-B"))  # pushes the first session out of a memory of one
        late = MeterReading(T0 + timedelta(minutes=20), (SampledValue(value="5500", unit="Wh"),))
        app.execute(RecordMeterValues("CS-A", 1, 1, first, [late.to_record()], T0))
        stored = _stored(app)
    finally:
        app.close()
    env = _views(database_url)
    first_start = next(n for n, event in stored if isinstance(event, Transaction.Started))
    with BatchRunner(env, BillingProjection, BillingView) as billing:
        billing.step(until=first_start)  # the session's row is in its table
        billing.view.kept = Kept(size=1)
        in_one_batch = billing.step()
    assert in_one_batch == 3, stored  # the stop, the second start, the late meter values
    with psycopg.connect(database_url) as conn:
        versions = conn.execute(
            "SELECT version, reason, idle_seconds FROM charging_sessions "
            "WHERE station_id = 'CS-A' ORDER BY version"
        ).fetchall()
    assert versions == [(1, "ended", 0), (2, "meter values came late", 2400)]


def test_a_transaction_forgotten_within_a_batch_is_read_back_as_the_batch_left_it(
    database_url: str,
) -> None:
    """The transactions view holds each row's write back to the end of the batch; a row that
    memory forgot in between must be read back with that write in it."""
    app = open_store(database_url)
    try:
        key = app.execute(_start("CS-A")).transaction_key
        reading = MeterReading(T0 + timedelta(minutes=20), (SampledValue(value="3000", unit="Wh"),))
        app.execute(RecordMeterValues("CS-A", 1, 1, key, [reading.to_record()], T0))
        app.execute(_start("CS-B"))  # pushes CS-A's row out of a memory of one
        app.execute(replace(_stop("CS-A", key), meter_stop_wh=None))  # energy from the register
        stored = _stored(app)
    finally:
        app.close()
    env = _views(database_url)
    first_start = next(n for n, event in stored if isinstance(event, Transaction.Started))
    with BatchRunner(env, TransactionsProjection, TransactionsView) as transactions:
        transactions.step(until=first_start)
        transactions.view.kept = Kept(size=1)  # as after a restart, and then some
        in_one_batch = transactions.step()
    assert in_one_batch == 3, stored  # the meter values, the second start, the stop
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT station_id, last_register_wh, energy_wh, stopped_at IS NOT NULL "
            "FROM transactions ORDER BY station_id"
        ).fetchall()
    assert rows == [("CS-A", 3_000, 2_000, True), ("CS-B", None, 0, False)]


def test_a_batch_notifies_each_payload_once_on_commit(database_url: str) -> None:
    env = _views(database_url)
    with (
        BatchRunner(env, TransactionsProjection, TransactionsView) as runner,
        psycopg.connect(database_url, autocommit=True) as listener,
    ):
        listener.execute("LISTEN batch_test")

        def work(cursor: Any) -> None:
            for payload in ("a", "b", "a"):
                runner.view.notify(cursor, "batch_test", payload)

        with runner.view.batch():
            runner.view.record_with(Tracking("CSMS", 1), work)
            assert not list(listener.notifies(timeout=0.2)), "nothing before the commit"
        received = [n.payload for n in listener.notifies(timeout=1, stop_after=3)]
    assert received == ["a", "b"]


def test_a_views_memory_forgets_what_was_least_recently_read_or_written() -> None:
    kept = Kept(size=2)
    kept["a"], kept["b"] = 1, 2
    assert kept.get("a") == 1  # a row read on every event must not be forgotten as unused
    kept["c"] = 3
    assert list(kept) == ["a", "c"]
    assert kept.get("b") is None and kept.get("b", 0) == 0


def test_a_row_written_whole_lands_as_last_written(database_url: str) -> None:
    """Rows written whole are copied in at a batch's next read and at its end; the first batch
    to write one fails here, taking the staging table it made with it."""
    env = {**_views(database_url), "POSTGRES_MAX_OVERFLOW": "0"}  # one connection throughout
    row_id = uuid4()

    def row(key: str) -> dict[str, Any]:
        return {
            "transaction_uuid": row_id,
            "station_id": "CS-1",
            "transaction_key": key,
            "updated_at": T0,
        }

    def shown(cursor: Any) -> list[str]:
        cursor.execute("SELECT transaction_key FROM transactions")
        return [found["transaction_key"] for found in cursor.fetchall()]

    with BatchRunner(env, TransactionsProjection, TransactionsView) as runner:
        view = runner.view

        def write(cursor: Any, key: str) -> None:
            view.write_row(cursor, "transactions", "transaction_uuid", row_id, lambda: row(key))

        def written_then_read(cursor: Any) -> None:
            write(cursor, "lost")
            assert shown(cursor) == ["lost"]  # copied in, through a staging table made now

        with pytest.raises(Interrupted), view.batch():
            view.record_with(Tracking("CSMS", 1), written_then_read)
            raise Interrupted
        seen_within: list[list[str]] = []

        def twice(cursor: Any) -> None:
            write(cursor, "first")
            seen_within.append(shown(cursor))
            write(cursor, "second")

        with view.batch():
            view.record_with(Tracking("CSMS", 2), twice)
        with psycopg.connect(database_url) as conn:
            after_batch = conn.execute(
                "SELECT transaction_key, missing_seq_nos, offline FROM transactions"
            ).fetchall()
            view.record_with(Tracking("CSMS", 3), lambda cursor: write(cursor, "unbatched"))
            unbatched = conn.execute("SELECT transaction_key FROM transactions").fetchall()
    assert seen_within == [["first"]]
    assert after_batch == [("second", [], False)]  # the columns not written keep their defaults
    assert unbatched == [("unbatched",)]


def test_a_staging_table_is_truncated_once_enough_rows_passed_through_it(database_url: str) -> None:
    """Each batch moves its rows out of the staging table, leaving dead rows; they are truncated
    once STAGED_BEFORE_TRUNCATE rows have passed, not at every commit (which cost PostgreSQL
    more than the batch's rows), so the table stays small and every row lands."""
    env = {**_views(database_url), "POSTGRES_MAX_OVERFLOW": "0"}  # one connection throughout
    per_batch = STAGED_BEFORE_TRUNCATE // 3 + 1  # the third batch passes the mark

    def written(cursor: Any) -> None:
        for _ in range(per_batch):
            row = {"transaction_uuid": uuid4(), "station_id": "CS-1", "updated_at": T0}
            row["transaction_key"] = str(row["transaction_uuid"])
            runner.view.write_row(
                cursor, "transactions", "transaction_uuid", row["transaction_uuid"], row
            )

    sizes = []
    with BatchRunner(env, TransactionsProjection, TransactionsView) as runner:
        for position in range(1, 5):
            with runner.view.batch():
                runner.view.record_with(Tracking("CSMS", position), written)
            with runner.view.datastore.transaction(commit=False) as cursor:
                cursor.execute("SELECT pg_relation_size('staged_transactions') AS size")
                row = cursor.fetchone()
                assert row is not None
                sizes.append(row["size"])
    assert sizes[0] > 0 and sizes[1] > sizes[0], sizes  # dead rows, kept for now
    assert sizes[2] == 0 and sizes[3] > 0, sizes  # truncated once past the mark, then anew
    with psycopg.connect(database_url) as conn:
        landed = conn.execute("SELECT count(*) FROM transactions").fetchone()
    assert landed == (4 * per_batch,)


def test_a_view_that_forgot_a_station_numbered_transaction_folds_it_from_the_store(
    database_url: str,
) -> None:
    """A 2.x transaction's earlier events are read from the store when a view does not have
    them in memory (after a restart): its row and its price still count them."""
    stored = _store(
        database_url,
        [
            tx_event(
                0,
                "Started",
                evse_id=1,
                connector_id=1,
                id_token="CARD",
                readings=[register(0, 1000, "Transaction.Begin")],
            ),
            tx_event(1, "Updated"),
            tx_event(
                2,
                "Ended",
                stop_reason="EVDisconnected",
                readings=[register(2, 1500, "Transaction.End")],
            ),
        ],
    )
    env = _views(database_url)
    updated = next(
        n for n, e in stored if isinstance(e, Transaction.EventReported) and e.seq_no == 1
    )
    for projection, view in (
        (TransactionsProjection, TransactionsView),
        (BillingProjection, BillingView),
    ):
        with BatchRunner(env, projection, view) as before_the_restart:
            before_the_restart.step(until=updated)
        with BatchRunner(env, projection, view) as after_it:
            assert after_it.step() == 1  # the end, with nothing in memory
    with psycopg.connect(database_url) as conn:
        shown = conn.execute(
            "SELECT started_at, evse_id, id_token, energy_wh, stop_reason FROM transactions"
        ).fetchone()
        priced = conn.execute(
            "SELECT started_at, id_token, energy_wh FROM charging_sessions"
        ).fetchone()
    assert shown == (EVENT_T0, 1, "CARD", 500, "EVDisconnected")
    assert priced == (EVENT_T0, "CARD", 500)


async def test_the_event_log_shows_times_and_decimals_as_text(database_url: str) -> None:
    tariff_id = uuid4()
    app = open_store(database_url)
    try:
        day = Prices(energy_per_kwh=Decimal("0.30"))
        app.execute(CreateTariff(tariff_id, "Day", "EUR", day, None, T0, None, "ops", T0))
        app.execute(_start("CS-1"))
    finally:
        app.close()
    with BatchRunner(_views(database_url), EventLogProjection, EventLogView) as log:
        log.step()
    created = (await _history(database_url, "Created"))[0]["data"]
    started = (await _history(database_url, "Started"))[0]["data"]
    assert created["prices"]["energy_per_kwh"] == "0.30"  # every digit, as written
    assert created["valid_from"] == T0.isoformat()
    assert started["started_at"] == T0.isoformat()
    assert "timestamp" not in started  # the store's bookkeeping is in columns of its own


async def test_an_event_log_that_copied_the_data_is_altered_and_shows_it_from_the_store(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:  # as earlier versions made it
        conn.execute(
            "CREATE TABLE event_log (position bigint PRIMARY KEY, aggregate_id uuid NOT NULL, "
            "aggregate_type text NOT NULL, version integer NOT NULL, event_type text NOT NULL, "
            "recorded_at timestamptz NOT NULL, station_id text, transaction_id text, "
            "data jsonb NOT NULL)"
        )
    app = open_store(database_url)
    try:
        app.execute(_start("CS-1"))
    finally:
        app.close()
    with BatchRunner(_views(database_url), EventLogProjection, EventLogView) as log:
        assert log.step() > 0
    started = (await _history(database_url, "Started"))[0]
    assert (started["station_id"], started["data"]["started_at"]) == ("CS-1", T0.isoformat())


@pytest.mark.parametrize("split", [False, True], ids=["one batch", "two batches"])
async def test_the_event_log_names_every_events_station_whatever_the_batches(
    database_url: str, split: bool
) -> None:
    """A transaction's later events carry no station: theirs is that of its first event, in the
    same batch or an earlier one."""
    stored = _store_a_finished_session(database_url)
    started = next(n for n, e in stored if isinstance(e, Transaction.Started))
    env = _views(database_url)
    with BatchRunner(env, EventLogProjection, EventLogView) as log:
        if split:
            assert log.step(until=started) == started  # up to the transaction's first event
        assert log.step() == len(stored) - (started if split else 0)
    rows = await _history(database_url)
    assert [row["position"] for row in rows] == [n for n, _ in stored]
    for row, (_, event) in zip(rows, stored, strict=True):
        aggregate_type, _, event_type = type(event).__qualname__.rpartition(".")
        assert (row["aggregate_type"], row["event_type"]) == (aggregate_type, event_type)
        assert row["recorded_at"] == event.timestamp
        assert row["station_id"] == "CS-1"
    key = next(e.transaction_key for _, e in stored if isinstance(e, Transaction.Started))
    of_the_transaction = [row for row in rows if row["aggregate_type"] == "Transaction"]
    assert [row["event_type"] for row in of_the_transaction] == ["Started", "Stopped"]
    assert all(row["transaction_id"] == key for row in of_the_transaction)


async def _history(database_url: str, event_type: str | None = None) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await queries.history(
            conn,
            station_id=None,
            aggregate_ids=None,
            since=None,
            until=None,
            types=[event_type] if event_type else None,
            after=0,
            limit=100,
        )


def test_a_station_row_forgotten_is_read_back_before_it_is_written_whole(
    database_url: str,
) -> None:
    """After a restart, a station's next event changes its row as the table has it."""
    booted_at = T0 + timedelta(seconds=1)
    stored = _store(
        database_url,
        [
            ConnectStation("CS-1", "c1", "ocpp1.6", "node-a", None, T0),
            RecordBoot("CS-1", "Acme", "X1", None, None, None, {}, 60, booted_at),
            ChangeConnectorStatus("CS-1", 1, 1, "Available", None, None, None, None, T0),
        ],
    )
    env = _views(database_url)
    booted = next(n for n, e in stored if isinstance(e, ChargingStation.Booted))
    with BatchRunner(env, StationStatusProjection, StationStatusView) as before_the_restart:
        before_the_restart.step(until=booted - 1)
    with BatchRunner(env, StationStatusProjection, StationStatusView) as after_it:
        assert after_it.step() >= 2  # the boot and the status, with nothing in memory
    with psycopg.connect(database_url) as conn:
        station = conn.execute(
            "SELECT station_id, connected, protocol, vendor, registration_status, last_boot_at "
            "FROM station_status"
        ).fetchall()
        connectors = conn.execute("SELECT evse_id, status FROM connector_status").fetchall()
    assert station == [("CS-1", True, "ocpp1.6", "Acme", "Accepted", booted_at)]
    assert connectors == [(1, "Available")]
