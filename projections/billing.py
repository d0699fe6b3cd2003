"""Charging sessions, priced, for billing systems: one row per version of each finished session.

A session gets its first version when its transaction ends. An event that arrives later and
changes what it delivered or costs (a late, offline-queued event or meter values) adds a new
version with the reason, at a new feed position; no version is ever rewritten. The feed
position is the notification id of the event that made the version, so a rebuild gives the
same positions and a billing system's cursor stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.billing import Sample, deliver, price
from domain.meter import energy_registers
from domain.tariffs import Prices, Tariff
from domain.transaction import Transaction
from projections.base import SqlView
from projections.reports import keep_and_summarize

FEED_COLUMNS = """feed_position, session_id, version, reason, priced_at, station_id,
    transaction_id, evse_id, connector_id, id_token, token_type, started_at, stopped_at,
    stop_reason, energy_wh, duration_seconds, charging_seconds, idle_seconds, tariff_id,
    tariff_name, tariff_version, currency, energy_cost, charging_time_cost, idle_cost,
    session_fee, subtotal, tax_rate, tax, total"""


class BillingView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS billing_tariffs (
            tariff_id uuid NOT NULL,
            version integer NOT NULL,
            name text NOT NULL,
            currency text NOT NULL,
            prices jsonb NOT NULL,
            station_ids text[],
            valid_from timestamptz NOT NULL,
            valid_to timestamptz,
            effective_from timestamptz NOT NULL,
            changed_by text NOT NULL,
            changed_at timestamptz NOT NULL,
            PRIMARY KEY (tariff_id, version))""",
        """CREATE TABLE IF NOT EXISTS billing_transactions (
            session_id uuid PRIMARY KEY,
            station_id text NOT NULL,
            transaction_key text NOT NULL,
            evse_id integer, connector_id integer, id_token text, token_type text,
            started_at timestamptz, stopped_at timestamptz, stop_reason text)""",
        """CREATE TABLE IF NOT EXISTS billing_reports (
            session_id uuid NOT NULL,
            seq_no integer NOT NULL,
            reported jsonb NOT NULL,
            PRIMARY KEY (session_id, seq_no))""",
        """CREATE TABLE IF NOT EXISTS billing_samples (
            session_id uuid NOT NULL,
            at timestamptz NOT NULL,
            wh numeric NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS billing_samples_by_session ON billing_samples (session_id)",
        """CREATE TABLE IF NOT EXISTS charging_sessions (
            session_id uuid NOT NULL,
            version integer NOT NULL,
            feed_position bigint NOT NULL UNIQUE,
            reason text NOT NULL,
            priced_at timestamptz NOT NULL,
            station_id text NOT NULL,
            transaction_id text NOT NULL,
            evse_id integer, connector_id integer, id_token text, token_type text,
            started_at timestamptz NOT NULL,
            stopped_at timestamptz NOT NULL,
            stop_reason text,
            energy_wh numeric NOT NULL,
            duration_seconds integer NOT NULL,
            charging_seconds integer NOT NULL,
            idle_seconds integer NOT NULL,
            tariff_id uuid, tariff_name text, tariff_version integer, currency text,
            energy_cost numeric, charging_time_cost numeric, idle_cost numeric,
            session_fee numeric, subtotal numeric, tax_rate numeric, tax numeric, total numeric,
            PRIMARY KEY (session_id, version))""",
        "CREATE INDEX IF NOT EXISTS charging_sessions_by_stop ON charging_sessions (stopped_at)",
        # The documented way for a billing system to read the feed straight from PostgreSQL.
        f"""CREATE OR REPLACE VIEW billing_feed AS
            SELECT {FEED_COLUMNS},
                version = max(version) OVER (PARTITION BY session_id) AS latest
            FROM charging_sessions""",
    )


# The columns whose change makes a new version (not the version's own bookkeeping).
_DELIVERY = (
    "station_id", "transaction_id", "evse_id", "connector_id", "id_token", "token_type",
    "started_at", "stopped_at", "stop_reason", "energy_wh", "duration_seconds",
    "charging_seconds", "idle_seconds",
)  # fmt: skip
_COST = (
    "tariff_id", "tariff_version", "currency", "energy_cost", "charging_time_cost",
    "idle_cost", "session_fee", "subtotal", "tax_rate", "tax", "total",
)  # fmt: skip
_CONTENT = _DELIVERY + _COST

_TARIFF_IN_FORCE = """
SELECT * FROM billing_tariffs
WHERE valid_from <= %(at)s AND (valid_to IS NULL OR %(at)s < valid_to)
    AND effective_from <= %(at)s
    AND (station_ids IS NULL OR %(station)s = ANY(station_ids))
ORDER BY station_ids IS NULL, effective_from DESC, valid_from DESC, tariff_id
LIMIT 1"""


def _samples(readings: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Decimal]]:
    return [(at, wh) for at, _, wh in energy_registers(readings)]


class _Pricing:
    """The work of one event on one session, inside the projection's transaction."""

    def __init__(self, cursor: Cursor[Any], session_id: UUID, kept: MutableMapping[Any, Any]):
        self.cursor = cursor
        self.session_id = session_id
        # Whether the session has both a start and an end, when known without reading its row:
        # most events belong to sessions still running, which need no pricing.
        self._kept = kept
        self._ended_key = ("ended", session_id)

    def add_samples(self, samples: Iterable[tuple[Any, Decimal | int | None]]) -> None:
        rows = [(self.session_id, at, wh) for at, wh in samples if wh is not None and at]
        if rows:
            self.cursor.executemany(
                "INSERT INTO billing_samples (session_id, at, wh) VALUES (%s, %s, %s)", rows
            )

    def update(self, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = %({name})s" for name in columns)
        self.cursor.execute(
            f"UPDATE billing_transactions SET {assignments} WHERE session_id = %(id)s",
            {**columns, "id": self.session_id},
        )
        if "started_at" in columns and "stopped_at" in columns:
            ended = columns["started_at"] is not None and columns["stopped_at"] is not None
            self._kept[self._ended_key] = ended
        elif "started_at" in columns or "stopped_at" in columns:
            self._kept.pop(self._ended_key, None)  # known again at the next read

    def created(self) -> None:
        self._kept.pop(self._ended_key, None)

    def reprice(self, position: int, at: Any, late_reason: str) -> None:
        """Adds a version if the session has ended and what it says has changed."""
        if self._kept.get(self._ended_key) is False:
            return
        session = self._one("SELECT * FROM billing_transactions WHERE session_id = %s")
        ended = session is not None and None not in (session["started_at"], session["stopped_at"])
        self._kept[self._ended_key] = ended
        if session is None or not ended:
            return
        row = self._priced(session)
        latest = self._one(
            "SELECT * FROM charging_sessions WHERE session_id = %s ORDER BY version DESC LIMIT 1"
        )
        if latest is not None and all(latest[c] == row[c] for c in _CONTENT):
            return
        row |= {
            "session_id": self.session_id,
            "version": 1 if latest is None else latest["version"] + 1,
            "feed_position": position,
            "reason": "ended" if latest is None else late_reason,
            "priced_at": at,
        }
        names = ", ".join(row)
        values = ", ".join(f"%({name})s" for name in row)
        self.cursor.execute(f"INSERT INTO charging_sessions ({names}) VALUES ({values})", row)

    def _one(self, sql: str) -> dict[str, Any] | None:
        self.cursor.execute(sql, (self.session_id,))
        found: dict[str, Any] | None = self.cursor.fetchone()
        return found

    def _priced(self, session: dict[str, Any]) -> dict[str, Any]:
        self.cursor.execute(
            "SELECT at, wh FROM billing_samples WHERE session_id = %s", (self.session_id,)
        )
        samples = [Sample(row["at"], row["wh"]) for row in self.cursor.fetchall()]
        delivery = deliver(samples, session["started_at"], session["stopped_at"])
        row: dict[str, Any] = {
            "station_id": session["station_id"],
            "transaction_id": session["transaction_key"],
            "evse_id": session["evse_id"],
            "connector_id": session["connector_id"],
            "id_token": session["id_token"],
            "token_type": session["token_type"],
            "started_at": session["started_at"],
            "stopped_at": session["stopped_at"],
            "stop_reason": session["stop_reason"],
            "energy_wh": delivery.energy_wh,
            "duration_seconds": delivery.charging_seconds + delivery.idle_seconds,
            "charging_seconds": delivery.charging_seconds,
            "idle_seconds": delivery.idle_seconds,
        }
        self.cursor.execute(
            _TARIFF_IN_FORCE, {"at": session["started_at"], "station": session["station_id"]}
        )
        tariff = self.cursor.fetchone()
        if tariff is None:
            return row | dict.fromkeys(_COST) | {"tariff_name": None}
        cost = price(delivery, Prices.from_record(tariff["prices"]), tariff["currency"])
        return row | {
            "tariff_id": tariff["tariff_id"],
            "tariff_name": tariff["name"],
            "tariff_version": tariff["version"],
            "currency": cost.currency,
            "energy_cost": cost.energy,
            "charging_time_cost": cost.charging_time,
            "idle_cost": cost.idle_time,
            "session_fee": cost.session_fee,
            "subtotal": cost.subtotal,
            "tax_rate": cost.tax_rate,
            "tax": cost.tax,
            "total": cost.total,
        }


def _prices_json(prices: Mapping[str, Decimal]) -> Jsonb:
    return Jsonb({name: str(value) for name, value in prices.items()})


class BillingProjection(Projection[BillingView]):
    name = "billing"
    topics = tuple(
        get_topic(cls)
        for cls in (
            Tariff.Created,
            Tariff.PricesChanged,
            Tariff.Ended,
            Transaction.Started,
            Transaction.Opened,
            Transaction.EventReported,
            Transaction.MeterValuesAdded,
            Transaction.Stopped,
        )
    )

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: Tariff.Created, tracking: Tracking) -> None:
        sql = """INSERT INTO billing_tariffs (tariff_id, version, name, currency, prices,
            station_ids, valid_from, valid_to, effective_from, changed_by, changed_at)
            VALUES (%(id)s, %(version)s, %(name)s, %(currency)s, %(prices)s, %(stations)s,
                %(valid_from)s, %(valid_to)s, %(valid_from)s, %(by)s, %(at)s)"""
        params = {
            "id": event.originator_id,
            "version": event.originator_version,
            "name": event.name,
            "currency": event.currency,
            "prices": _prices_json(event.prices),
            "stations": event.station_ids,
            "valid_from": event.valid_from,
            "valid_to": event.valid_to,
            "by": event.created_by,
            "at": event.timestamp,
        }
        self.view.record(tracking, [(sql, params)])

    @process_event.register
    def _(self, event: Tariff.PricesChanged, tracking: Tracking) -> None:
        sql = """INSERT INTO billing_tariffs (tariff_id, version, name, currency, prices,
            station_ids, valid_from, valid_to, effective_from, changed_by, changed_at)
            SELECT tariff_id, %(version)s, name, currency, %(prices)s, station_ids, valid_from,
                valid_to, %(effective)s, %(by)s, %(at)s
            FROM billing_tariffs WHERE tariff_id = %(id)s ORDER BY version DESC LIMIT 1"""
        params = {
            "id": event.originator_id,
            "version": event.originator_version,
            "prices": _prices_json(event.prices),
            "effective": event.effective_from,
            "by": event.by,
            "at": event.timestamp,
        }
        self.view.record(tracking, [(sql, params)])

    @process_event.register
    def _(self, event: Tariff.Ended, tracking: Tracking) -> None:
        sql = "UPDATE billing_tariffs SET valid_to = %(to)s WHERE tariff_id = %(id)s"
        self.view.record(tracking, [(sql, {"id": event.originator_id, "to": event.valid_to})])

    @process_event.register
    def _(self, event: Transaction.Started, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            cursor.execute(
                "INSERT INTO billing_transactions (session_id, station_id, transaction_key, "
                "evse_id, connector_id, id_token, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    event.originator_id,
                    event.station_id,
                    event.transaction_key,
                    event.evse_id,
                    event.connector_id,
                    event.id_token,
                    event.started_at,
                ),
            )
            pricing = _Pricing(cursor, event.originator_id, self.view.kept)
            pricing.created()
            pricing.add_samples([(event.started_at, event.meter_start_wh)])

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Opened, tracking: Tracking) -> None:
        sql = (
            "INSERT INTO billing_transactions (session_id, station_id, transaction_key) "
            "VALUES (%s, %s, %s)"
        )
        params = (event.originator_id, event.station_id, event.transaction_key)

        def work(cursor: Cursor[Any]) -> None:
            cursor.execute(sql, params)
            _Pricing(cursor, event.originator_id, self.view.kept).created()

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.MeterValuesAdded, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            pricing = _Pricing(cursor, event.originator_id, self.view.kept)
            pricing.add_samples(_samples(event.readings))
            pricing.reprice(tracking.notification_id, event.timestamp, "meter values came late")

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Stopped, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            pricing = _Pricing(cursor, event.originator_id, self.view.kept)
            pricing.update(stopped_at=event.stopped_at, stop_reason=event.reason)
            pricing.add_samples([(event.stopped_at, event.meter_stop_wh)])
            pricing.reprice(tracking.notification_id, event.timestamp, "stopped again")

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.EventReported, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            summary = keep_and_summarize(
                cursor, "billing_reports", "session_id", event, self.view.kept
            )
            pricing = _Pricing(cursor, event.originator_id, self.view.kept)
            pricing.update(
                evse_id=summary.evse_id,
                connector_id=summary.connector_id,
                id_token=summary.id_token,
                token_type=summary.token_type,
                started_at=summary.started_at,
                stopped_at=summary.stopped_at,
                stop_reason=summary.stop_reason,
            )
            pricing.add_samples(_samples(event.readings))
            late = f"event {event.seq_no} ({event.kind}) came after the end"
            pricing.reprice(tracking.notification_id, event.timestamp, late)

        self.view.record_with(tracking, work)
