"""GraphQL types and queries over the read models."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.auth import READERS, SESSION_READERS
from api.paging import MAX_PAGE, page_size, position_after, split_page
from api.ports import backend, pool
from api.records import (
    ChargingSession,
    IdTokenRecord,
    RemoteCommandResult,
    SessionPage,
    TariffRecord,
    Upload,
)
from projections import queries

# Connector states that mean "in use", in the finer words some protocols report.
_OCCUPIED = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})


@strawberry.type
class Connector:
    evse_id: int
    connector_id: int
    status: str = strawberry.field(description="The state as the station reported it")
    availability: str = strawberry.field(
        description="The same state in one vocabulary for every protocol: "
        "Available, Occupied, Reserved, Unavailable or Faulted"
    )
    error_code: str | None
    info: str | None
    vendor_error_code: str | None
    reported_at: datetime | None = strawberry.field(description="Station's time of the report")
    updated_at: datetime = strawberry.field(description="When the CSMS received it")


@strawberry.type
class Evse:
    id: int = strawberry.field(description="0 is the station as a whole")
    connectors: list[Connector]


@strawberry.type
class Variable:
    component: str
    component_instance: str | None
    evse_id: int | None
    connector_id: int | None
    variable: str
    variable_instance: str | None
    attribute_type: str = strawberry.field(description="Actual, Target, MinSet or MaxSet")
    value: str | None
    mutability: str | None
    persistent: bool | None
    constant: bool | None
    characteristics: JSON | None = strawberry.field(
        description="Unit, data type, limits and allowed values, as the station reported them"
    )
    reported_at: datetime = strawberry.field(description="Station's time of the statement")
    updated_at: datetime = strawberry.field(description="When the CSMS received it")

    @staticmethod
    def from_row(row: dict[str, Any]) -> Variable:
        return Variable(
            component=row["component"],
            component_instance=row["component_instance"],
            evse_id=row["evse_id"],
            connector_id=row["connector_id"],
            variable=row["variable"],
            variable_instance=row["variable_instance"],
            attribute_type=row["attribute_type"],
            value=row["value"],
            mutability=row["mutability"],
            persistent=row["persistent"],
            constant=row["constant"],
            characteristics=row["characteristics"],
            reported_at=row["reported_at"],
            updated_at=row["updated_at"],
        )


@strawberry.type
class FirmwareUpdate:
    location: str
    retrieve_at: str
    requested_at: datetime
    requested_by: str


@strawberry.type
class Station:
    uuid: strawberry.Private[UUID]
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
    firmware_status: str | None = strawberry.field(
        description="The station's last firmware progress report (Downloading, Installed, ...)"
    )
    firmware_status_at: datetime | None
    firmware_update: FirmwareUpdate | None = strawberry.field(
        description="The last firmware update an operator asked for"
    )
    log_upload_status: str | None
    connectors: list[Connector]

    @strawberry.field(description="Remote commands sent to it, newest first")
    async def commands(self, info: Info, first: int = 20) -> list[RemoteCommandResult]:
        async with pool(info).connection() as conn:
            rows = await queries.remote_commands(conn, self.id, min(first, MAX_PAGE))
        return [RemoteCommandResult.from_row(r) for r in rows]

    @strawberry.field(description="Files it uploaded (diagnostics, logs), newest first")
    async def uploads(self, info: Info) -> list[Upload]:
        return [
            Upload(
                id=f.file_id,
                command_id=f.command_id,
                file_name=f.file_name,
                content_type=f.content_type,
                size=f.size,
                sha256=f.sha256,
                uploaded_at=f.uploaded_at,
                download_path=f"/files/{f.file_id}",
            )
            for f in await backend(info).uploads(self.id)
        ]

    @strawberry.field(description="EVSEs with their connectors")
    def evses(self) -> list[Evse]:
        by_evse: dict[int, list[Connector]] = {}
        for connector in self.connectors:
            by_evse.setdefault(connector.evse_id, []).append(connector)
        return [Evse(id=evse_id, connectors=found) for evse_id, found in by_evse.items()]

    @strawberry.field(description="The station's variables as it reported them (its device model)")
    async def variables(
        self, info: Info, component: str | None = None, variable: str | None = None
    ) -> list[Variable]:
        async with pool(info).connection() as conn:
            rows = await queries.variables(conn, self.uuid, component, variable)
        return [Variable.from_row(r) for r in rows]

    @staticmethod
    def from_row(row: dict[str, Any]) -> Station:
        return Station(
            uuid=row["station_uuid"],
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
            firmware_status_at=row["firmware_status_at"],
            firmware_update=FirmwareUpdate(
                location=row["firmware_location"],
                retrieve_at=row["firmware_retrieve_at"],
                requested_at=row["firmware_requested_at"],
                requested_by=row["firmware_requested_by"],
            )
            if row["firmware_location"]
            else None,
            log_upload_status=row["log_upload_status"],
            connectors=[
                Connector(
                    evse_id=c["evse_id"],
                    connector_id=c["connector_id"],
                    status=c["status"],
                    availability="Occupied" if c["status"] in _OCCUPIED else c["status"],
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
        description="The transaction's id on its station (CSMS-assigned in 1.6, "
        "station-assigned in 2.x)"
    )
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    started_at: datetime | None = strawberry.field(description="Station's time of the start")
    stopped_at: datetime | None
    stop_reason: str | None
    charging_state: str | None
    meter_start_wh: Decimal | None
    meter_stop_wh: Decimal | None
    energy_wh: Decimal | None = strawberry.field(description="Energy delivered so far, in Wh")
    active: bool
    missing_seq_nos: list[int] = strawberry.field(
        description="Sequence numbers of the station's transaction events not received yet"
    )
    offline: bool = strawberry.field(description="Some of its events were queued while offline")

    @staticmethod
    def from_row(row: dict[str, Any]) -> Transaction:
        return Transaction(
            station_id=row["station_id"],
            transaction_id=row["transaction_key"],
            evse_id=row["evse_id"],
            connector_id=row["connector_id"],
            id_token=row["id_token"],
            token_type=row["token_type"],
            started_at=row["started_at"],
            stopped_at=row["stopped_at"],
            stop_reason=row["stop_reason"],
            charging_state=row["charging_state"],
            missing_seq_nos=row["missing_seq_nos"],
            offline=row["offline"],
            meter_start_wh=row["meter_start_wh"],
            meter_stop_wh=row["meter_stop_wh"],
            energy_wh=row["energy_wh"],
            active=row["stopped_at"] is None,
        )


async def station_by_uuid(info: Info, station_uuid: UUID) -> Station | None:
    async with pool(info).connection() as conn:
        rows = await queries.stations(conn, station_uuid=station_uuid)
    return Station.from_row(rows[0]) if rows else None


@strawberry.type
class Query:
    @strawberry.field(
        permission_classes=[READERS], description="Every station the CSMS has seen, by id"
    )
    async def stations(self, info: Info) -> list[Station]:
        async with pool(info).connection() as conn:
            return [Station.from_row(r) for r in await queries.stations(conn)]

    @strawberry.field(
        permission_classes=[READERS], description="One station, or null if it was never seen"
    )
    async def station(self, info: Info, id: str) -> Station | None:
        async with pool(info).connection() as conn:
            rows = await queries.stations(conn, id)
        return Station.from_row(rows[0]) if rows else None

    @strawberry.field(
        permission_classes=[SESSION_READERS], description="Transactions, newest first"
    )
    async def transactions(
        self,
        info: Info,
        station_id: str | None = None,
        active: bool | None = None,
        first: int = 100,
    ) -> list[Transaction]:
        async with pool(info).connection() as conn:
            rows = await queries.transactions(conn, station_id, active, min(first, MAX_PAGE))
        return [Transaction.from_row(r) for r in rows]

    @strawberry.field(
        permission_classes=[READERS],
        description="Remote commands (of one station, or all), newest first: who asked what, "
        "and what the station answered",
    )
    async def remote_commands(
        self, info: Info, station_id: str | None = None, first: int = 100
    ) -> list[RemoteCommandResult]:
        async with pool(info).connection() as conn:
            rows = await queries.remote_commands(conn, station_id, min(first, MAX_PAGE))
        return [RemoteCommandResult.from_row(r) for r in rows]

    @strawberry.field(permission_classes=[SESSION_READERS], description="Tariffs, as now")
    async def tariffs(self, info: Info) -> list[TariffRecord]:
        async with pool(info).connection() as conn:
            return [TariffRecord.from_row(r) for r in await queries.tariffs(conn)]

    @strawberry.field(
        permission_classes=[SESSION_READERS],
        description="Finished charging sessions, priced, in feed order: every version of each, "
        "a correction being a new version. Keep `endCursor` and pass it as `after` next time: "
        "each version is read exactly once.",
    )
    async def charging_sessions(
        self, info: Info, after: str | None = None, first: int = 100, session_id: UUID | None = None
    ) -> SessionPage:
        size = page_size(first)
        async with pool(info).connection() as conn:
            rows = await queries.charging_sessions(
                conn, position_after(after), size + 1, session_id
            )
        found, more = split_page(rows, size)
        sessions = [ChargingSession.from_row(r) for r in found]
        end = sessions[-1].cursor if sessions else after
        return SessionPage(sessions=sessions, end_cursor=end, has_more=more)

    @strawberry.field(permission_classes=[READERS], description="Registered id tokens")
    async def id_tokens(self, info: Info, first: int = 100) -> list[IdTokenRecord]:
        async with pool(info).connection() as conn:
            rows = await queries.id_tokens(conn, None, min(first, MAX_PAGE))
        return [IdTokenRecord.from_row(r) for r in rows]

    @strawberry.field(permission_classes=[READERS])
    async def id_token(self, info: Info, id_token: str) -> IdTokenRecord | None:
        async with pool(info).connection() as conn:
            rows = await queries.id_tokens(conn, id_token, 1)
        return IdTokenRecord.from_row(rows[0]) if rows else None
