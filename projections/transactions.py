"""Transactions: one row per transaction, with its energy so far.

A CSMS-numbered transaction is folded event by event. A station-numbered one is summarised
from all of its events after each, with the domain's own rules (`projections.reports`), so its
row does not depend on the order the events arrived in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.meter import last_energy_register_wh
from domain.transaction import Transaction
from projections.base import ParallelRebuild, Row, SqlView, WholeRows
from projections.reports import fold_reported, no_reports_yet


class TransactionsView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS transactions (
            transaction_uuid uuid PRIMARY KEY,
            station_id text NOT NULL,
            transaction_key text NOT NULL,
            evse_id integer,
            connector_id integer,
            id_token text,
            token_type text,
            started_at timestamptz,
            stopped_at timestamptz,
            stop_reason text,
            charging_state text,
            meter_start_wh numeric,
            meter_stop_wh numeric,
            last_register_wh numeric,
            energy_wh numeric,
            missing_seq_nos integer[] NOT NULL DEFAULT '{}',
            offline boolean NOT NULL DEFAULT false,
            updated_at timestamptz NOT NULL,
            UNIQUE (station_id, transaction_key))""",
        # A table made by an earlier version gains what station-numbered transactions need.
        """ALTER TABLE transactions ALTER COLUMN evse_id DROP NOT NULL,
            ALTER COLUMN connector_id DROP NOT NULL, ALTER COLUMN started_at DROP NOT NULL,
            ALTER COLUMN meter_start_wh TYPE numeric, ALTER COLUMN meter_stop_wh TYPE numeric,
            ADD COLUMN IF NOT EXISTS token_type text,
            ADD COLUMN IF NOT EXISTS charging_state text,
            ADD COLUMN IF NOT EXISTS missing_seq_nos integer[] NOT NULL DEFAULT '{}',
            ADD COLUMN IF NOT EXISTS offline boolean NOT NULL DEFAULT false""",
        # Made by an earlier version: the events it copied are read from the store instead.
        "DROP TABLE IF EXISTS transaction_reports",
        "CREATE INDEX IF NOT EXISTS transactions_by_station "
        "ON transactions (station_id, started_at DESC)",
        "CREATE INDEX IF NOT EXISTS transactions_active ON transactions (station_id) "
        "WHERE stopped_at IS NULL",
    )


# Every change writes a transaction's whole row, so a batch sends only its last state.
_COLUMNS = (
    "transaction_uuid", "station_id", "transaction_key", "evse_id", "connector_id", "id_token",
    "token_type", "started_at", "stopped_at", "stop_reason", "charging_state", "meter_start_wh",
    "meter_stop_wh", "last_register_wh", "energy_wh", "missing_seq_nos", "offline", "updated_at",
)  # fmt: skip
# The columns a station-numbered transaction's summary decides.
_SUMMARISED = (
    "evse_id", "connector_id", "id_token", "token_type", "started_at", "stopped_at",
    "stop_reason", "charging_state", "meter_start_wh", "meter_stop_wh", "last_register_wh",
    "energy_wh", "missing_seq_nos", "offline",
)  # fmt: skip


class _Rows(WholeRows):
    """The view's transaction rows, each written whole once per batch."""

    table, key_column = "transactions", "transaction_uuid"

    def new(self, transaction_id: UUID, at: datetime, **columns: Any) -> Row:
        row: Row = dict.fromkeys(_COLUMNS)
        row |= {"transaction_uuid": transaction_id, "missing_seq_nos": [], "offline": False}
        row |= columns
        row["updated_at"] = at
        return self.keep(row)


def _energy(row: Row) -> Decimal | int | None:
    """Energy so far: the stop register (or, without one, the latest) minus the start; 0 while
    running with no reading yet, unknown once stopped without either."""
    start, end = row["meter_start_wh"], row["meter_stop_wh"]
    if end is None:
        end = row["last_register_wh"]
    if end is None and row["stopped_at"] is None:
        end = start
    return None if end is None or start is None else end - start


class TransactionsProjection(Projection[TransactionsView]):
    name = "transactions"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Transaction.Started,
            Transaction.MeterValuesAdded,
            Transaction.Stopped,
            Transaction.Opened,
            Transaction.EventReported,
        )
    )
    # A transaction's row comes from its own events alone.
    parallel_rebuild = ParallelRebuild()

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: Transaction.Started, tracking: Tracking) -> None:
        def work(rows: _Rows) -> None:
            row = rows.new(
                event.originator_id,
                event.timestamp,
                station_id=event.station_id,
                transaction_key=event.transaction_key,
                evse_id=event.evse_id,
                connector_id=event.connector_id,
                id_token=event.id_token,
                started_at=event.started_at,
                meter_start_wh=event.meter_start_wh,
            )
            row["energy_wh"] = _energy(row)
            rows.write(row)

        self._record(tracking, work)

    @process_event.register
    def _(self, event: Transaction.MeterValuesAdded, tracking: Tracking) -> None:
        register = last_energy_register_wh(event.readings)
        if register is None:
            self.view.record(tracking, [])
            return

        def work(rows: _Rows) -> None:
            row = rows.get(event.originator_id)
            if row is None:
                return
            row["last_register_wh"], row["updated_at"] = register, event.timestamp
            row["energy_wh"] = _energy(row)
            rows.write(row)

        self._record(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Stopped, tracking: Tracking) -> None:
        def work(rows: _Rows) -> None:
            row = rows.get(event.originator_id)
            if row is None:
                return
            row["stopped_at"], row["stop_reason"] = event.stopped_at, event.reason
            row["meter_stop_wh"], row["updated_at"] = event.meter_stop_wh, event.timestamp
            row["energy_wh"] = _energy(row)
            rows.write(row)

        self._record(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Opened, tracking: Tracking) -> None:
        no_reports_yet(event.originator_id, self.view.kept)

        def work(rows: _Rows) -> None:
            row = rows.new(
                event.originator_id,
                event.timestamp,
                station_id=event.station_id,
                transaction_key=event.transaction_key,
            )
            rows.write(row)

        self._record(tracking, work)

    @process_event.register
    def _(self, event: Transaction.EventReported, tracking: Tracking) -> None:
        def work(rows: _Rows) -> None:
            fold = fold_reported(event, self.view.kept, self.view.history)
            row = rows.get(event.originator_id)
            if row is None:
                return

            def summarised() -> Row:
                # The summary of every report so far, made once, when the row is written.
                summary = fold.summary()
                row.update({name: getattr(summary, name) for name in _SUMMARISED})
                row["updated_at"] = event.timestamp
                return row

            rows.write(row, summarised)

        self._record(tracking, work)

    def _record(self, tracking: Tracking, work: Callable[[_Rows], None]) -> None:
        self.view.record_with(tracking, lambda cursor: work(_Rows(self.view, cursor)))
