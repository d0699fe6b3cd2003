"""Live station status: one row per station, one per connector."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor

from domain.ids import station_uuid
from domain.remote import Operation, RemoteCommand
from domain.station import ChargingStation
from projections.base import Params, Row, SqlView, WholeRows


class StationStatusView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS station_status (
            station_uuid uuid PRIMARY KEY,
            station_id text NOT NULL UNIQUE,
            vendor text, model text, serial_number text, firmware_version text,
            registration_status text,
            connected boolean NOT NULL DEFAULT false,
            protocol text, node text,
            connected_at timestamptz, disconnected_at timestamptz, last_boot_at timestamptz,
            firmware_status text, log_upload_status text,
            registered_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS connector_status (
            station_uuid uuid NOT NULL,
            evse_id integer NOT NULL,
            connector_id integer NOT NULL,
            status text NOT NULL, error_code text, info text, vendor_error_code text,
            reported_at timestamptz,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (station_uuid, evse_id, connector_id))""",
        """ALTER TABLE station_status
            ADD COLUMN IF NOT EXISTS firmware_status_at timestamptz,
            ADD COLUMN IF NOT EXISTS firmware_location text,
            ADD COLUMN IF NOT EXISTS firmware_retrieve_at text,
            ADD COLUMN IF NOT EXISTS firmware_requested_at timestamptz,
            ADD COLUMN IF NOT EXISTS firmware_requested_by text""",
    )


# Tells API nodes (GraphQL subscriptions) that a station's row changed; sent on commit.
CHANGED_CHANNEL = "csms_station_changed"

# Every column of a station's row: rows are kept in memory and written whole, once per batch.
_STATION_COLUMNS = (
    "station_uuid", "station_id", "vendor", "model", "serial_number", "firmware_version",
    "registration_status", "connected", "protocol", "node", "connected_at", "disconnected_at",
    "last_boot_at", "firmware_status", "log_upload_status", "registered_at", "updated_at",
    "firmware_status_at", "firmware_location", "firmware_retrieve_at", "firmware_requested_at",
    "firmware_requested_by",
)  # fmt: skip
_CONNECTOR_KEY = ("station_uuid", "evse_id", "connector_id")

Change = Callable[[Row], None]


class _Stations(WholeRows):
    """The view's station rows, each written whole once per batch (a rebuild used to wait on
    one statement per status change)."""

    table, key_column = "station_status", "station_uuid"

    def new(self, station: UUID, **columns: Any) -> Row:
        row: Row = dict.fromkeys(_STATION_COLUMNS)
        return self.keep(row | {"station_uuid": station, "connected": False, **columns})

    def write(self, row: Row, params: Params | None = None) -> None:
        """Writes the row, and tells listening nodes it changed (once per station and batch is
        enough: listeners read the row as committed)."""
        super().write(row, params)
        self.view.notify(self.cursor, CHANGED_CHANNEL, str(row["station_uuid"]))


class StationStatusProjection(Projection[StationStatusView]):
    name = "station_status"
    topics = tuple(
        get_topic(cls)
        for cls in (
            ChargingStation.Registered,
            ChargingStation.Connected,
            ChargingStation.Disconnected,
            ChargingStation.Booted,
            ChargingStation.ConnectorStatusChanged,
            ChargingStation.FirmwareStatusReported,
            ChargingStation.LogUploadStatusReported,
            RemoteCommand.Requested,
        )
    )

    def _change(self, tracking: Tracking, event: Any, **columns: Any) -> None:
        """Sets the columns and `updated_at` on the event's station row."""
        columns["updated_at"] = event.timestamp
        self._change_with(tracking, event.originator_id, lambda row: row.update(columns))

    def _change_with(self, tracking: Tracking, station: UUID, change: Change) -> None:
        def work(cursor: Cursor[Any]) -> None:
            stations = _Stations(self.view, cursor)
            row = stations.get(station)
            if row is not None:  # a station this view never saw registered: nothing to show
                change(row)
                stations.write(row)

        self.view.record_with(tracking, work)

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: ChargingStation.Registered, tracking: Tracking) -> None:
        def work(cursor: Cursor[Any]) -> None:
            stations = _Stations(self.view, cursor)
            at = event.timestamp
            station = event.originator_id
            stations.write(
                stations.new(station, station_id=event.station_id, registered_at=at, updated_at=at)
            )

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: ChargingStation.Connected, tracking: Tracking) -> None:
        self._change(
            tracking,
            event,
            connected=True,
            protocol=event.protocol,
            node=event.node,
            connected_at=event.timestamp,
        )

    @process_event.register
    def _(self, event: ChargingStation.Disconnected, tracking: Tracking) -> None:
        self._change(tracking, event, connected=False, disconnected_at=event.timestamp)

    @process_event.register
    def _(self, event: ChargingStation.Booted, tracking: Tracking) -> None:
        self._change(
            tracking,
            event,
            vendor=event.vendor,
            model=event.model,
            serial_number=event.serial_number,
            firmware_version=event.firmware_version,
            registration_status=event.registration_status,
            last_boot_at=event.timestamp,
        )

    @process_event.register
    def _(self, event: ChargingStation.ConnectorStatusChanged, tracking: Tracking) -> None:
        connector = {
            "station_uuid": event.originator_id,
            "evse_id": event.evse_id,
            "connector_id": event.connector_id,
            "status": event.status,
            "error_code": event.error_code,
            "info": event.info,
            "vendor_error_code": event.vendor_error_code,
            "reported_at": event.station_time,
            "updated_at": event.timestamp,
        }
        key = tuple(connector[name] for name in _CONNECTOR_KEY)

        def work(cursor: Cursor[Any]) -> None:
            self.view.write_row(cursor, "connector_status", _CONNECTOR_KEY, key, connector)
            stations = _Stations(self.view, cursor)
            if (row := stations.get(event.originator_id)) is not None:
                row["updated_at"] = event.timestamp
                stations.write(row)

        self.view.record_with(tracking, work)

    @process_event.register
    def _(self, event: ChargingStation.FirmwareStatusReported, tracking: Tracking) -> None:
        self._change(
            tracking, event, firmware_status=event.status, firmware_status_at=event.timestamp
        )

    @process_event.register
    def _(self, event: ChargingStation.LogUploadStatusReported, tracking: Tracking) -> None:
        self._change(tracking, event, log_upload_status=event.status)

    @process_event.register
    def _(self, event: RemoteCommand.Requested, tracking: Tracking) -> None:
        """An update the operator asked for, shown beside the progress the station reports."""
        if event.operation != Operation.UPDATE_FIRMWARE:
            self.view.record(tracking, [])
            return
        requested = {
            "firmware_location": event.arguments.get("location"),
            "firmware_retrieve_at": event.arguments.get("retrieve_at"),
            "firmware_requested_at": event.timestamp,
            "firmware_requested_by": event.requested_by,
        }
        station = station_uuid(event.station_id)
        self._change_with(tracking, station, lambda row: row.update(requested))
