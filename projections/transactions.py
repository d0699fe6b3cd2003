"""Transactions: one row per transaction, with its energy so far."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.meter import last_energy_register_wh
from domain.transaction import Transaction
from projections.base import SqlView


class TransactionsView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS transactions (
            transaction_uuid uuid PRIMARY KEY,
            station_id text NOT NULL,
            transaction_key text NOT NULL,
            evse_id integer NOT NULL,
            connector_id integer NOT NULL,
            id_token text,
            started_at timestamptz NOT NULL,
            stopped_at timestamptz,
            stop_reason text,
            meter_start_wh bigint,
            meter_stop_wh bigint,
            last_register_wh numeric,
            energy_wh numeric,
            updated_at timestamptz NOT NULL,
            UNIQUE (station_id, transaction_key))""",
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


class TransactionsProjection(Projection[TransactionsView]):
    name = "transactions"
    topics = tuple(
        get_topic(cls)
        for cls in (Transaction.Started, Transaction.MeterValuesAdded, Transaction.Stopped)
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
