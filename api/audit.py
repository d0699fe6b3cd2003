"""What auditors ask: the history, any aggregate as it stood at an instant, the raw frames."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.auth import READERS
from api.paging import aware, page_size, position_after, split_page
from api.ports import backend, pool
from domain.ids import station_uuid, transaction_uuid
from domain.station import ChargingStation
from domain.transaction import Transaction
from projections import queries


@strawberry.type
class HistoryEvent:
    cursor: str = strawberry.field(description="Its position in the global sequence")
    aggregate_id: UUID
    aggregate_type: str = strawberry.field(description="ChargingStation, Transaction, ...")
    type: str = strawberry.field(description="The event: Connected, EventReported, ...")
    version: int = strawberry.field(description="Its number within its aggregate")
    recorded_at: datetime = strawberry.field(description="When the CSMS recorded it")
    station_id: str | None
    transaction_id: str | None
    data: JSON = strawberry.field(description="Everything it says, station times included")

    @staticmethod
    def from_row(row: dict[str, Any]) -> HistoryEvent:
        return HistoryEvent(
            cursor=str(row["position"]),
            aggregate_id=row["aggregate_id"],
            aggregate_type=row["aggregate_type"],
            type=row["event_type"],
            version=row["version"],
            recorded_at=row["recorded_at"],
            station_id=row["station_id"],
            transaction_id=row["transaction_id"],
            data=row["data"],
        )


@strawberry.type
class HistoryPage:
    events: list[HistoryEvent]
    end_cursor: str | None
    has_more: bool


@strawberry.type
class ConnectorSnapshot:
    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    reported_at: datetime | None


@strawberry.type
class StationSnapshot:
    id: str
    version: int = strawberry.field(description="The last of its events recorded by then")
    connected: bool
    protocol: str | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    registration_status: str | None
    firmware_status: str | None
    connectors: list[ConnectorSnapshot]

    @staticmethod
    def of(station: ChargingStation) -> StationSnapshot:
        return StationSnapshot(
            id=station.station_id,
            version=station.version,
            connected=station.connected,
            protocol=station.protocol,
            vendor=station.vendor,
            model=station.model,
            serial_number=station.serial_number,
            firmware_version=station.firmware_version,
            registration_status=station.registration_status,
            firmware_status=station.firmware_status,
            connectors=[
                ConnectorSnapshot(
                    evse_id=evse,
                    connector_id=connector,
                    status=state.status,
                    error_code=state.error_code,
                    reported_at=state.reported_at,
                )
                for (evse, connector), state in sorted(station.connectors.items())
            ],
        )


@strawberry.type
class TransactionSnapshot:
    station_id: str
    transaction_id: str
    version: int
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    stop_reason: str | None
    energy_wh: str | None = strawberry.field(description="So far, as a decimal")
    active: bool

    @staticmethod
    def of(transaction: Transaction) -> TransactionSnapshot:
        energy = transaction.energy_wh
        return TransactionSnapshot(
            station_id=transaction.station_id,
            transaction_id=transaction.transaction_key,
            version=transaction.version,
            evse_id=transaction.evse_id,
            connector_id=transaction.connector_id,
            id_token=transaction.id_token,
            started_at=transaction.started_at,
            stopped_at=transaction.stopped_at,
            stop_reason=transaction.stop_reason,
            energy_wh=None if energy is None else str(energy),
            active=transaction.is_active,
        )


@strawberry.type
class FrameRecord:
    cursor: str
    station_id: str
    direction: str = strawberry.field(description="in (from the station) or out")
    at: datetime
    message_id: str | None
    action: str | None
    frame: str = strawberry.field(description="The raw text, as sent")


@strawberry.type
class FramePage:
    frames: list[FrameRecord]
    end_cursor: str | None
    has_more: bool


async def _at(info: Info, aggregate_id: UUID, at: datetime) -> Any:
    return await backend(info).aggregate_at(aggregate_id, aware(at) or at)


@strawberry.type
class AuditQuery:
    @strawberry.field(
        permission_classes=[READERS],
        description="Stored events in their global order: of a station (its transactions and "
        "commands included), of one transaction, or of everything; in a window of recording "
        "time; of some types (`Connected` or `ChargingStation.Connected`). Page with `after`.",
    )
    async def history(
        self,
        info: Info,
        station_id: str | None = None,
        transaction_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        types: list[str] | None = None,
        after: str | None = None,
        first: int = 100,
    ) -> HistoryPage:
        aggregates = None
        if transaction_id is not None:
            if station_id is None:
                raise ValueError("a transactionId is a station's: give its stationId too")
            aggregates = [transaction_uuid(station_id, transaction_id)]
            station_id = None
        size = page_size(first)
        async with pool(info).connection() as conn:
            rows = await queries.history(
                conn,
                station_id=station_id,
                aggregate_ids=aggregates,
                since=aware(since),
                until=aware(until),
                types=types,
                after=position_after(after),
                limit=size + 1,
            )
        found, more = split_page(rows, size)
        events = [HistoryEvent.from_row(r) for r in found]
        end = events[-1].cursor if events else after
        return HistoryPage(events=events, end_cursor=end, has_more=more)

    @strawberry.field(
        permission_classes=[READERS],
        description="The station as the CSMS knew it at that instant: its events recorded by "
        "then, replayed. Null if it was not known yet.",
    )
    async def station_at(self, info: Info, id: str, at: datetime) -> StationSnapshot | None:
        station = await _at(info, station_uuid(id), at)
        return StationSnapshot.of(station) if station is not None else None

    @strawberry.field(
        permission_classes=[READERS],
        description="The transaction as the CSMS knew it at that instant, replayed",
    )
    async def transaction_at(
        self, info: Info, station_id: str, transaction_id: str, at: datetime
    ) -> TransactionSnapshot | None:
        transaction = await _at(info, transaction_uuid(station_id, transaction_id), at)
        return TransactionSnapshot.of(transaction) if transaction is not None else None

    @strawberry.field(
        permission_classes=[READERS],
        description="A station's raw OCPP frames, both directions, in the order they passed",
    )
    async def frames(
        self,
        info: Info,
        station_id: str,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        first: int = 100,
    ) -> FramePage:
        size = page_size(first)
        rows = await backend(info).frames(
            station_id, aware(since), aware(until), position_after(after), size + 1
        )
        found, more = split_page(rows, size)
        frames = [
            FrameRecord(
                cursor=str(r["id"]),
                station_id=r["station_id"],
                direction=r["direction"],
                at=r["at"],
                message_id=r["message_id"],
                action=r["action"],
                frame=r["frame"],
            )
            for r in found
        ]
        end = frames[-1].cursor if frames else after
        return FramePage(frames=frames, end_cursor=end, has_more=more)
