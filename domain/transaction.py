"""The transaction aggregate: one charging session on one connector, and its meter evidence.

A transaction is numbered either by the CSMS (it answers the start with a number) or by the
station (it names the transaction in every event it reports). A station-numbered transaction is
told as a sequence of numbered events that may arrive late, out of order or twice; its state is
folded from the set of events received, so the order they arrived in does not matter.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import transaction_start_uuid, transaction_uuid
from domain.int_set import IntSet
from domain.meter import energy_registers
from domain.transaction_events import Fold, ReportedEvent

# What a station-numbered transaction's state takes from the summary of its events.
_FOLDED_STATE = (
    "evse_id",
    "connector_id",
    "id_token",
    "token_type",
    "started_at",
    "stopped_at",
    "stop_reason",
    "meter_start_wh",
    "meter_stop_wh",
    "charging_state",
    "reservation_id",
    "missing_seq_nos",
)


class Transaction(Aggregate):
    """Keyed by the station and its transaction key (CSMS-assigned or station-assigned)."""

    class Started(Aggregate.Created):
        station_id: str
        transaction_key: str
        evse_id: int
        connector_id: int
        id_token: str | None
        meter_start_wh: int | None
        started_at: datetime
        reservation_id: int | None

    class Opened(Aggregate.Created):
        """A station-numbered transaction was first heard of (by any of its events)."""

        station_id: str
        transaction_key: str

    class EventReported(Aggregate.Event):
        """One numbered event of a station-numbered transaction, as the station told it."""

        seq_no: int
        kind: str  # Started, Updated or Ended
        station_time: datetime
        trigger_reason: str
        offline: bool
        evse_id: int | None
        connector_id: int | None
        id_token: str | None
        token_type: str | None
        charging_state: str | None
        stop_reason: str | None
        remote_start_id: int | None
        reservation_id: int | None
        readings: list[dict[str, Any]]
        details: dict[str, Any]  # the rest of what the station said, verbatim

        def apply(self, transaction: Transaction) -> None:
            transaction.fold({name: getattr(self, name) for name in REPORT_FIELDS})

    class EventConflicted(Aggregate.Event):
        """The station reused a sequence number for different content; kept, not folded."""

        seq_no: int
        content: dict[str, Any]

    class MeterValuesAdded(Aggregate.Event):
        readings: list[dict[str, Any]]

        def apply(self, transaction: Transaction) -> None:
            transaction.keep_readings(self.readings)

    class Stopped(Aggregate.Event):
        stopped_at: datetime
        meter_stop_wh: int | None
        reason: str | None
        id_token: str | None

        def apply(self, transaction: Transaction) -> None:
            transaction.stopped_at = self.stopped_at
            transaction.meter_stop_wh = self.meter_stop_wh
            transaction.stop_reason = self.reason

    @event(Started)
    def __init__(
        self,
        station_id: str,
        transaction_key: str,
        evse_id: int | None = None,
        connector_id: int | None = None,
        id_token: str | None = None,
        meter_start_wh: int | None = None,
        started_at: datetime | None = None,
        reservation_id: int | None = None,
    ) -> None:
        self.station_id = station_id
        self.transaction_key = transaction_key
        self.evse_id = evse_id
        self.connector_id = connector_id
        self.id_token = id_token
        self.meter_start_wh: Decimal | int | None = meter_start_wh
        self.started_at = started_at
        self.reservation_id = reservation_id
        # Only digests of what was reported, and the latest energy register: a session
        # reporting every ten seconds for hours must not grow by every reading it sent.
        self._readings_seen = IntSet()  # digests of the readings kept (CSMS-numbered)
        self._latest_register: tuple[datetime, Decimal] | None = None
        self.stopped_at: datetime | None = None
        self.meter_stop_wh: Decimal | int | None = None
        self.stop_reason: str | None = None
        self._fold = Fold()  # station-numbered: the events folded so far
        self._reported = IntSet()  # and the digests of their fields
        self.token_type: str | None = None
        self.charging_state: str | None = None
        self.missing_seq_nos: list[int] = []

    @classmethod
    def open(cls, station_id: str, transaction_key: str, at: datetime) -> Transaction:
        """A station-numbered transaction, before any of its events is folded in."""
        return cls._create(
            cls.Opened,
            id=transaction_uuid(station_id, transaction_key),
            station_id=station_id,
            transaction_key=transaction_key,
            timestamp=at,
        )

    @staticmethod
    def create_id(station_id: str, transaction_key: str, **_: Any) -> UUID:
        return transaction_uuid(station_id, transaction_key)

    @property
    def is_active(self) -> bool:
        return self.stopped_at is None

    @property
    def settled(self) -> bool:
        """Stopped, with none of its numbered events missing: little more is expected of it."""
        return self.stopped_at is not None and not self.missing_seq_nos

    @property
    def energy_wh(self) -> Decimal | None:
        """Energy delivered so far: stop (or latest) register minus start register."""
        if self.meter_stop_wh is not None:
            end: Decimal | None = Decimal(self.meter_stop_wh)
        elif len(self._fold.seq_nos):
            end = self._fold.summary().last_register_wh
        else:
            end = self._latest_register[1] if self._latest_register else None
        if end is None or self.meter_start_wh is None:
            return None
        return end - self.meter_start_wh

    def report(self, fields: dict[str, Any], at: datetime) -> bool:
        """Folds in one numbered event; False if it was known already (a retry changes nothing).

        A different event under a sequence number already taken is kept as a conflict.
        """
        seq_no = fields["seq_no"]
        if seq_no not in self._fold.seq_nos:
            self.trigger_event(self.EventReported, timestamp=at, **fields)
            return True
        if digest(fields) not in self._reported:  # the fields name their seq_no
            self.trigger_event(self.EventConflicted, seq_no=seq_no, content=fields, timestamp=at)
        return False

    def fold(self, fields: dict[str, Any]) -> None:
        self._reported.add(digest(fields))
        self._fold.add(ReportedEvent.of(fields))
        summary = self._fold.summary()
        for name in _FOLDED_STATE:
            setattr(self, name, getattr(summary, name))

    def keep_readings(self, readings: list[dict[str, Any]]) -> None:
        for reading in readings:
            self._readings_seen.add(digest(reading))
        for at, _, wh in energy_registers(readings):
            if self._latest_register is None or at >= self._latest_register[0]:
                self._latest_register = (at, wh)

    def add_meter_values(self, readings: list[dict[str, Any]], at: datetime) -> None:
        fresh = [r for r in readings if digest(r) not in self._readings_seen]  # resent: nothing
        if fresh:
            self.trigger_event(self.MeterValuesAdded, readings=fresh, timestamp=at)

    def stop(
        self,
        stopped_at: datetime,
        meter_stop_wh: int | None,
        reason: str | None,
        id_token: str | None,
        at: datetime,
    ) -> bool:
        """Stops it; False if it had stopped already (a resent stop changes nothing)."""
        if not self.is_active:
            return False
        self.trigger_event(
            self.Stopped,
            stopped_at=stopped_at,
            meter_stop_wh=meter_stop_wh,
            reason=reason,
            id_token=id_token,
            timestamp=at,
        )
        return True


def digest(content: dict[str, Any]) -> int:
    """A fingerprint of a reading or an event's fields, to tell a resend from new content.

    Held in memory only, and compared within one process (str hashes are salted per process).
    Values compare as the station wrote them: 1 and 1.0 differ, as two dates in other offsets.
    """
    return hash(_CANONICAL_JSON.encode(content))


# One encoder for every digest: `json.dumps` with options builds a new one per call.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


_BASE_FIELDS = {field.name for field in dataclasses.fields(Aggregate.Event)}
REPORT_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(Transaction.EventReported)
    if field.name not in _BASE_FIELDS
)


class TransactionStart(Aggregate):
    """Remembers which transaction a start request created, so a resent request is recognised.

    Its id derives from the station and a fingerprint of the request's content.
    """

    class Recorded(Aggregate.Created):
        station_id: str
        fingerprint: str
        transaction_key: str

    @event(Recorded)
    def __init__(self, station_id: str, fingerprint: str, transaction_key: str) -> None:
        self.station_id = station_id
        self.fingerprint = fingerprint
        self.transaction_key = transaction_key

    @staticmethod
    def create_id(station_id: str, fingerprint: str, **_: Any) -> UUID:
        return transaction_start_uuid(station_id, fingerprint)

    # Only a resent start asks for it again: the store keeps it, memory need not.
    settled = True
