"""Charging sessions, priced, for billing systems: one row per version of each finished session.

A session gets its first version when its transaction ends. An event that arrives later and
changes what it delivered or costs (a late, offline-queued event or meter values) adds a new
version with the reason, at a new feed position; no version is ever rewritten. The feed
position is the notification id of the event that made the version, so a rebuild gives the
same positions and a billing system's cursor stays valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
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
from projections.base import ParallelRebuild, SqlView, append
from projections.reports import fold_reported, no_reports_yet

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
        # Made by an earlier version: the events it copied are read from the store instead.
        "DROP TABLE IF EXISTS billing_reports",
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


def _samples(readings: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Decimal]]:
    return [(at, wh) for at, _, wh in energy_registers(readings)]


# The columns of billing_transactions that events change.
_SESSION_FIELDS = (
    "evse_id", "connector_id", "id_token", "token_type", "started_at", "stopped_at",
    "stop_reason",
)  # fmt: skip
_SAMPLE_COLUMNS = ("session_id", "at", "wh")
# A session's energy samples are kept in memory up to this many; a longer session's are read
# back from billing_samples when it is priced (at its end), so memory does not grow with it.
SAMPLES_KEPT = 64
_VERSION_COLUMNS = tuple(name.strip() for name in FEED_COLUMNS.split(","))


@dataclass
class _Session:
    """What pricing a session needs, as its tables hold it."""

    row: dict[str, Any]  # its billing_transactions row
    samples: list[Sample] | None  # None once there are too many to keep: read when priced
    latest: dict[str, Any] | None  # its latest version in charging_sessions

    @property
    def ended(self) -> bool:
        return None not in (self.row["started_at"], self.row["stopped_at"])


class _Ledger:
    """The work of one event, inside the projection's transaction.

    Sessions and tariffs are kept in memory once read or written, so an event costs writes
    only. Every write reaches the tables before the batch reads anything, so whatever memory
    forgets can be read back from them, even in the middle of a batch.
    """

    def __init__(self, cursor: Cursor[Any], view: BillingView) -> None:
        self.cursor = cursor
        self._view = view
        self._kept = view.kept

    def open(self, session_id: UUID, **columns: Any) -> _Session:
        row = {"session_id": session_id, **dict.fromkeys(_SESSION_FIELDS), **columns}
        session = _Session(row, [], None)
        self._kept[("session", session_id)] = session
        self._write(session)
        return session

    def session(self, session_id: UUID) -> _Session | None:
        key = ("session", session_id)
        session: _Session | None = self._kept.get(key)
        if session is None:
            session = self._read_session(session_id)
            if session is not None:
                self._kept[key] = session
        return session

    def update(self, session: _Session, **columns: Any) -> None:
        if all(session.row[name] == value for name, value in columns.items()):
            return
        session.row.update(columns)
        self._write(session)

    def _write(self, session: _Session) -> None:
        # Written whole, as it is when sent: a batch sends only a session's last state.
        row = session.row
        self._view.write_row(
            self.cursor, "billing_transactions", "session_id", row["session_id"], row
        )

    def add_samples(
        self, session: _Session, samples: Iterable[tuple[Any, Decimal | int | None]]
    ) -> None:
        for at, wh in samples:
            if wh is None or not at:
                continue
            if session.samples is not None:
                session.samples.append(Sample(at, Decimal(wh)))
                if len(session.samples) > SAMPLES_KEPT:
                    session.samples = None
            append(
                self.cursor, "billing_samples", _SAMPLE_COLUMNS, (session.row["session_id"], at, wh)
            )

    def reprice(self, session: _Session, position: int, at: Any, late_reason: str) -> None:
        """Adds a version if the session has ended and what it says has changed."""
        if not session.ended:
            return
        row = self._priced(session)
        latest = session.latest
        if latest is not None and all(latest[c] == row[c] for c in _CONTENT):
            return
        row |= {
            "session_id": session.row["session_id"],
            "version": 1 if latest is None else latest["version"] + 1,
            "feed_position": position,
            "reason": "ended" if latest is None else late_reason,
            "priced_at": at,
        }
        append(
            self.cursor, "charging_sessions", _VERSION_COLUMNS, [row[c] for c in _VERSION_COLUMNS]
        )
        session.latest = row

    def tariffs(self) -> list[dict[str, Any]]:
        """Every version of every tariff, read once."""
        tariffs: list[dict[str, Any]] | None = self._kept.get("tariffs")
        if tariffs is None:
            self.cursor.execute("SELECT * FROM billing_tariffs")
            tariffs = self._kept["tariffs"] = list(self.cursor.fetchall())
        return tariffs

    def tariffs_if_read(self) -> list[dict[str, Any]] | None:
        """The tariffs in memory, to be changed with the table; None if not read yet."""
        found: list[dict[str, Any]] | None = self._kept.get("tariffs")
        return found

    def _read_session(self, session_id: UUID) -> _Session | None:
        row = self._one("SELECT * FROM billing_transactions WHERE session_id = %s", session_id)
        if row is None:
            return None
        samples = self._read_samples(session_id, limit=SAMPLES_KEPT + 1)  # more: not kept
        latest = self._one(
            "SELECT * FROM charging_sessions WHERE session_id = %s ORDER BY version DESC LIMIT 1",
            session_id,
        )
        return _Session(row, samples if len(samples) <= SAMPLES_KEPT else None, latest)

    def _read_samples(self, session_id: UUID, limit: int | None = None) -> list[Sample]:
        self.cursor.execute(
            "SELECT at, wh FROM billing_samples WHERE session_id = %s LIMIT %s",
            (session_id, limit),
        )
        return [Sample(found["at"], found["wh"]) for found in self.cursor.fetchall()]

    def _one(self, sql: str, session_id: UUID) -> dict[str, Any] | None:
        self.cursor.execute(sql, (session_id,))
        found: dict[str, Any] | None = self.cursor.fetchone()
        return found

    def _priced(self, session: _Session) -> dict[str, Any]:
        fields = session.row
        samples = session.samples
        if samples is None:
            samples = self._read_samples(fields["session_id"])
        delivery = deliver(samples, fields["started_at"], fields["stopped_at"])
        row: dict[str, Any] = {
            "station_id": fields["station_id"],
            "transaction_id": fields["transaction_key"],
            **{name: fields[name] for name in _SESSION_FIELDS},
            "energy_wh": delivery.energy_wh,
            "duration_seconds": delivery.charging_seconds + delivery.idle_seconds,
            "charging_seconds": delivery.charging_seconds,
            "idle_seconds": delivery.idle_seconds,
        }
        tariff = _in_force(self.tariffs(), fields["started_at"], fields["station_id"])
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


def _prices_record(prices: Mapping[str, Decimal]) -> dict[str, str]:
    """Prices as the table keeps them: every digit, as text."""
    return {name: str(value) for name, value in prices.items()}


def _in_force(tariffs: Iterable[dict[str, Any]], at: datetime, station: str) -> Any:
    """The tariff version that prices a session started then at that station.

    A tariff for named stations wins over one for every station; then the latest
    effective version, the latest validity, and the smallest id.
    """
    candidates = [
        t
        for t in tariffs
        if t["valid_from"] <= at
        and (t["valid_to"] is None or at < t["valid_to"])
        and t["effective_from"] <= at
        and (t["station_ids"] is None or station in t["station_ids"])
    ]
    candidates.sort(key=lambda t: t["tariff_id"])
    candidates.sort(key=lambda t: (t["effective_from"], t["valid_from"]), reverse=True)
    candidates.sort(key=lambda t: t["station_ids"] is None)
    return candidates[0] if candidates else None


_TARIFF_TOPICS = tuple(
    get_topic(cls) for cls in (Tariff.Created, Tariff.PricesChanged, Tariff.Ended)
)


class BillingProjection(Projection[BillingView]):
    name = "billing"
    topics = _TARIFF_TOPICS + tuple(
        get_topic(cls)
        for cls in (
            Transaction.Started,
            Transaction.Opened,
            Transaction.EventReported,
            Transaction.MeterValuesAdded,
            Transaction.Stopped,
        )
    )
    # A session's rows come from its transaction's events alone, priced by the tariffs known
    # when they came, which every share must see at the same point.
    parallel_rebuild = ParallelRebuild(shared_topics=_TARIFF_TOPICS)

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    def _ledger(self, cursor: Cursor[Any]) -> _Ledger:
        return _Ledger(cursor, self.view)

    @process_event.register
    def _(self, event: Tariff.Created, tracking: Tracking) -> None:
        row = {
            "tariff_id": event.originator_id,
            "version": event.originator_version,
            "name": event.name,
            "currency": event.currency,
            "prices": _prices_record(event.prices),
            "station_ids": event.station_ids,
            "valid_from": event.valid_from,
            "valid_to": event.valid_to,
            "effective_from": event.valid_from,
            "changed_by": event.created_by,
            "changed_at": event.timestamp,
        }
        self.view.record_with(
            tracking, lambda cursor: _insert_tariff_version(self._ledger(cursor), row)
        )

    @process_event.register
    def _(self, event: Tariff.PricesChanged, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            ledger = self._ledger(cursor)
            versions = [t for t in ledger.tariffs() if t["tariff_id"] == event.originator_id]
            if not versions:
                return
            row = max(versions, key=lambda t: t["version"]) | {
                "version": event.originator_version,
                "prices": _prices_record(event.prices),
                "effective_from": event.effective_from,
                "changed_by": event.by,
                "changed_at": event.timestamp,
            }
            _insert_tariff_version(ledger, row)

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Tariff.Ended, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            cursor.execute(
                "UPDATE billing_tariffs SET valid_to = %(to)s WHERE tariff_id = %(id)s",
                {"id": event.originator_id, "to": event.valid_to},
            )
            for tariff in self._ledger(cursor).tariffs_if_read() or ():
                if tariff["tariff_id"] == event.originator_id:
                    tariff["valid_to"] = event.valid_to

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Started, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            ledger = self._ledger(cursor)
            session = ledger.open(
                event.originator_id,
                station_id=event.station_id,
                transaction_key=event.transaction_key,
                evse_id=event.evse_id,
                connector_id=event.connector_id,
                id_token=event.id_token,
                started_at=event.started_at,
            )
            ledger.add_samples(session, [(event.started_at, event.meter_start_wh)])

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Opened, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            self._ledger(cursor).open(
                event.originator_id,
                station_id=event.station_id,
                transaction_key=event.transaction_key,
            )
            no_reports_yet(event.originator_id, self.view.kept)

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.MeterValuesAdded, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            ledger = self._ledger(cursor)
            if (session := ledger.session(event.originator_id)) is None:
                return
            ledger.add_samples(session, _samples(event.readings))
            ledger.reprice(
                session, tracking.notification_id, event.timestamp, "meter values came late"
            )

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.Stopped, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            ledger = self._ledger(cursor)
            if (session := ledger.session(event.originator_id)) is None:
                return
            ledger.update(session, stopped_at=event.stopped_at, stop_reason=event.reason)
            ledger.add_samples(session, [(event.stopped_at, event.meter_stop_wh)])
            ledger.reprice(session, tracking.notification_id, event.timestamp, "stopped again")

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: Transaction.EventReported, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            fold = fold_reported(event, self.view.kept, self.view.history)
            summary = fold.summary()
            ledger = self._ledger(cursor)
            if (session := ledger.session(event.originator_id)) is None:
                return
            ledger.update(session, **{name: getattr(summary, name) for name in _SESSION_FIELDS})
            ledger.add_samples(session, _samples(event.readings))
            late = f"event {event.seq_no} ({event.kind}) came after the end"
            ledger.reprice(session, tracking.notification_id, event.timestamp, late)

        self.view.record_with(tracking, work)


_INSERT_TARIFF = """INSERT INTO billing_tariffs (tariff_id, version, name, currency, prices,
    station_ids, valid_from, valid_to, effective_from, changed_by, changed_at)
    VALUES (%(tariff_id)s, %(version)s, %(name)s, %(currency)s, %(prices)s, %(station_ids)s,
        %(valid_from)s, %(valid_to)s, %(effective_from)s, %(changed_by)s, %(changed_at)s)"""


def _insert_tariff_version(ledger: _Ledger, row: dict[str, Any]) -> None:
    ledger.cursor.execute(_INSERT_TARIFF, row | {"prices": Jsonb(row["prices"])})
    if (tariffs := ledger.tariffs_if_read()) is not None:
        tariffs.append(row)
