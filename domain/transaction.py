"""The transaction aggregate: one charging session on one connector, and its meter evidence."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import transaction_start_uuid, transaction_uuid
from domain.meter import last_energy_register_wh


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

    class MeterValuesAdded(Aggregate.Event):
        readings: list[dict[str, Any]]

        def apply(self, transaction: Transaction) -> None:
            transaction.readings.extend(self.readings)

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
        evse_id: int,
        connector_id: int,
        id_token: str | None,
        meter_start_wh: int | None,
        started_at: datetime,
        reservation_id: int | None,
    ) -> None:
        self.station_id = station_id
        self.transaction_key = transaction_key
        self.evse_id = evse_id
        self.connector_id = connector_id
        self.id_token = id_token
        self.meter_start_wh = meter_start_wh
        self.started_at = started_at
        self.reservation_id = reservation_id
        self.readings: list[dict[str, Any]] = []
        self.stopped_at: datetime | None = None
        self.meter_stop_wh: int | None = None
        self.stop_reason: str | None = None

    @staticmethod
    def create_id(station_id: str, transaction_key: str, **_: Any) -> UUID:
        return transaction_uuid(station_id, transaction_key)

    @property
    def is_active(self) -> bool:
        return self.stopped_at is None

    @property
    def energy_wh(self) -> Decimal | None:
        """Energy delivered so far: stop (or latest) register minus start register."""
        end = (
            Decimal(self.meter_stop_wh)
            if self.meter_stop_wh is not None
            else last_energy_register_wh(self.readings)
        )
        if end is None or self.meter_start_wh is None:
            return None
        return end - self.meter_start_wh

    def add_meter_values(self, readings: list[dict[str, Any]], at: datetime) -> None:
        fresh = [r for r in readings if r not in self.readings]  # a resent message adds nothing
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
