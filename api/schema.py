"""GraphQL types and queries over the read models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import strawberry
from psycopg_pool import AsyncConnectionPool
from strawberry.types import Info

from projections import queries

MAX_PAGE = 1000


@strawberry.type
class Connector:
    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    info: str | None
    vendor_error_code: str | None
    reported_at: datetime | None = strawberry.field(description="Station's time of the report")
    updated_at: datetime = strawberry.field(description="When the CSMS received it")


@strawberry.type
class Station:
    id: str
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    registration_status: str | None
    connected: bool
    protocol: str | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    last_boot_at: datetime | None
    firmware_status: str | None
    log_upload_status: str | None
    connectors: list[Connector]

    @staticmethod
    def from_row(row: dict[str, Any]) -> Station:
        return Station(
            id=row["station_id"],
            vendor=row["vendor"],
            model=row["model"],
            serial_number=row["serial_number"],
            firmware_version=row["firmware_version"],
            registration_status=row["registration_status"],
            connected=row["connected"],
            protocol=row["protocol"],
            connected_at=row["connected_at"],
            disconnected_at=row["disconnected_at"],
            last_boot_at=row["last_boot_at"],
            firmware_status=row["firmware_status"],
            log_upload_status=row["log_upload_status"],
            connectors=[
                Connector(
                    evse_id=c["evse_id"],
                    connector_id=c["connector_id"],
                    status=c["status"],
                    error_code=c["error_code"],
                    info=c["info"],
                    vendor_error_code=c["vendor_error_code"],
                    reported_at=c["reported_at"],
                    updated_at=c["updated_at"],
                )
                for c in row["connectors"]
            ],
        )


@strawberry.type
class Transaction:
    station_id: str
    transaction_id: str = strawberry.field(
        description="The transaction's id on its station (1.6: the CSMS-assigned number)"
    )
    evse_id: int
    connector_id: int
    id_token: str | None
    started_at: datetime
    stopped_at: datetime | None
    stop_reason: str | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: Decimal | None = strawberry.field(description="Energy delivered so far, in Wh")
    active: bool

    @staticmethod
    def from_row(row: dict[str, Any]) -> Transaction:
        return Transaction(
            station_id=row["station_id"],
            transaction_id=row["transaction_key"],
            evse_id=row["evse_id"],
            connector_id=row["connector_id"],
            id_token=row["id_token"],
            started_at=row["started_at"],
            stopped_at=row["stopped_at"],
            stop_reason=row["stop_reason"],
            meter_start_wh=row["meter_start_wh"],
            meter_stop_wh=row["meter_stop_wh"],
            energy_wh=row["energy_wh"],
            active=row["stopped_at"] is None,
        )


def _pool(info: Info) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = info.context["pool"]
    return pool


@strawberry.type
class Query:
    @strawberry.field(description="Every station the CSMS has seen, by id")
    async def stations(self, info: Info) -> list[Station]:
        async with _pool(info).connection() as conn:
            return [Station.from_row(r) for r in await queries.stations(conn)]

    @strawberry.field(description="One station, or null if it was never seen")
    async def station(self, info: Info, id: str) -> Station | None:
        async with _pool(info).connection() as conn:
            rows = await queries.stations(conn, id)
        return Station.from_row(rows[0]) if rows else None

    @strawberry.field(description="Transactions, newest first")
    async def transactions(
        self,
        info: Info,
        station_id: str | None = None,
        active: bool | None = None,
        first: int = 100,
    ) -> list[Transaction]:
        async with _pool(info).connection() as conn:
            rows = await queries.transactions(conn, station_id, active, min(first, MAX_PAGE))
        return [Transaction.from_row(r) for r in rows]


schema = strawberry.Schema(query=Query)
