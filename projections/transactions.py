"""Transactions: one row per transaction, with its energy so far.

A CSMS-numbered transaction is folded event by event. A station-numbered one keeps what each
of its events said in `transaction_reports` and is summarised from all of them after each, with
the domain's own rules, so its row does not depend on the order the events arrived in.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor

from domain.meter import last_energy_register_wh
from domain.transaction import Transaction
from projections.base import SqlView
from projections.reports import keep_reported, no_reports_yet


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
        """CREATE TABLE IF NOT EXISTS transaction_reports (
            transaction_uuid uuid NOT NULL,
            seq_no integer NOT NULL,
            reported jsonb NOT NULL,
            PRIMARY KEY (transaction_uuid, seq_no))""",
        "CREATE INDEX IF NOT EXISTS transactions_by_station "
        "ON transactions (station_id, started_at DESC)",
        "CREATE INDEX IF NOT EXISTS transactions_active ON transactions (station_id) "
        "WHERE stopped_at IS NULL",
    )


_INSERT = """
INSERT INTO transactions (transaction_uuid, station_id, transaction_key, evse_id, connector_id,
    id_token, started_at, meter_start_wh, energy_wh, updated_at)
VALUES (%(id)s, %(station)s, %(key)s, %(evse)s, %(connector)s, %(token)s, %(started)s,
    %(meter)s, CASE WHEN %(meter)s::bigint IS NULL THEN NULL ELSE 0 END, %(at)s)"""


_OPEN = """
INSERT INTO transactions (transaction_uuid, station_id, transaction_key, updated_at)
VALUES (%(id)s, %(station)s, %(key)s, %(at)s)"""

_SUMMARY = """
UPDATE transactions SET evse_id = %(evse_id)s, connector_id = %(connector_id)s,
    id_token = %(id_token)s, token_type = %(token_type)s, started_at = %(started_at)s,
    stopped_at = %(stopped_at)s, stop_reason = %(stop_reason)s,
    charging_state = %(charging_state)s, meter_start_wh = %(meter_start_wh)s,
    meter_stop_wh = %(meter_stop_wh)s, last_register_wh = %(last_register_wh)s,
    energy_wh = %(energy_wh)s, missing_seq_nos = %(missing_seq_nos)s, offline = %(offline)s,
    updated_at = %(at)s
WHERE transaction_uuid = %(id)s"""


def _fold_report(
    view: TransactionsView, event: Transaction.EventReported, cursor: Cursor[Any]
) -> None:
    fold = keep_reported(cursor, "transaction_reports", "transaction_uuid", event, view.kept)

    def row() -> dict[str, Any]:
        summary = fold.summary()
        return {
            **summary.__dict__,
            "energy_wh": summary.energy_wh,
            "id": event.originator_id,
            "at": event.timestamp,
        }

    # The row is the summary of every report so far: only the last one counts, and the
    # summary is made once, when the row is written.
    view.defer(cursor, ("summary", event.originator_id), _SUMMARY, row)


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

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: Transaction.Started, tracking: Tracking) -> None:
        self.view.record(
            tracking,
            [
                (
                    _INSERT,
                    {
                        "id": event.originator_id,
                        "station": event.station_id,
                        "key": event.transaction_key,
                        "evse": event.evse_id,
                        "connector": event.connector_id,
                        "token": event.id_token,
                        "started": event.started_at,
                        "meter": event.meter_start_wh,
                        "at": event.timestamp,
                    },
                )
            ],
        )

    @process_event.register
    def _(self, event: Transaction.MeterValuesAdded, tracking: Tracking) -> None:
        register = last_energy_register_wh(event.readings)
        statements = []
        if register is not None:
            # While running, energy follows the register; once stopped, meterStop decides.
            statements.append(
                (
                    "UPDATE transactions SET last_register_wh = %(wh)s, updated_at = %(at)s, "
                    "energy_wh = CASE WHEN meter_stop_wh IS NULL THEN %(wh)s - meter_start_wh "
                    "ELSE energy_wh END WHERE transaction_uuid = %(id)s",
                    {"id": event.originator_id, "wh": register, "at": event.timestamp},
                )
            )
        self.view.record(tracking, statements)

    @process_event.register
    def _(self, event: Transaction.Stopped, tracking: Tracking) -> None:
        self.view.record(
            tracking,
            [
                (
                    "UPDATE transactions SET stopped_at = %(stopped)s, stop_reason = %(reason)s, "
                    "meter_stop_wh = %(meter)s, updated_at = %(at)s, energy_wh = "
                    "COALESCE(%(meter)s::bigint, last_register_wh) - meter_start_wh "
                    "WHERE transaction_uuid = %(id)s",
                    {
                        "id": event.originator_id,
                        "stopped": event.stopped_at,
                        "reason": event.reason,
                        "meter": event.meter_stop_wh,
                        "at": event.timestamp,
                    },
                )
            ],
        )

    @process_event.register
    def _(self, event: Transaction.Opened, tracking: Tracking) -> None:
        no_reports_yet("transaction_reports", event.originator_id, self.view.kept)
        self.view.record(
            tracking,
            [
                (
                    _OPEN,
                    {
                        "id": event.originator_id,
                        "station": event.station_id,
                        "key": event.transaction_key,
                        "at": event.timestamp,
                    },
                )
            ],
        )

    @process_event.register
    def _(self, event: Transaction.EventReported, tracking: Tracking) -> None:
        self.view.record_with(tracking, lambda cursor: _fold_report(self.view, event, cursor))
