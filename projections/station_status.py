"""Live station status: one row per station, one per connector."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg import Cursor

from domain.ids import station_uuid
from domain.remote import Operation, RemoteCommand
from domain.station import ChargingStation
from projections.base import SqlView, Statement


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


_REGISTER = """
INSERT INTO station_status (station_uuid, station_id, registered_at, updated_at)
VALUES (%(id)s, %(station_id)s, %(at)s, %(at)s)"""

# One statement for the connector and its station's `updated_at`, the same for every status
# change, so that a batch sends a run of them together.
_UPSERT_CONNECTOR = """
WITH connector AS (
    INSERT INTO connector_status (station_uuid, evse_id, connector_id, status, error_code,
        info, vendor_error_code, reported_at, updated_at)
    VALUES (%(id)s, %(evse)s, %(connector)s, %(status)s, %(error)s, %(info)s,
        %(vendor_error)s, %(reported)s, %(at)s)
    ON CONFLICT (station_uuid, evse_id, connector_id) DO UPDATE SET
        status = EXCLUDED.status, error_code = EXCLUDED.error_code, info = EXCLUDED.info,
        vendor_error_code = EXCLUDED.vendor_error_code, reported_at = EXCLUDED.reported_at,
        updated_at = EXCLUDED.updated_at)
UPDATE station_status SET updated_at = %(at)s WHERE station_uuid = %(id)s"""


def _update(columns: str, event: Any, **values: Any) -> Statement:
    """Sets the columns and `updated_at` on the event's station row."""
    assignments = ", ".join(filter(None, [columns, "updated_at = %(at)s"]))
    sql = f"UPDATE station_status SET {assignments} WHERE station_uuid = %(id)s"
    return sql, {"id": event.originator_id, "at": event.timestamp, **values}


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

    def _record(self, tracking: Tracking, station: Any, statements: list[Statement]) -> None:
        """Applies the statements and tells listening nodes the station changed."""

        def work(cursor: Cursor[Any]) -> None:
            for sql, params in statements:
                cursor.execute(sql, params)  # type: ignore[arg-type]
            # Once per station and batch is enough: listeners read the row as committed.
            self.view.notify(cursor, CHANGED_CHANNEL, str(station))

        self.view.record_with(tracking, work)

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: ChargingStation.Registered, tracking: Tracking) -> None:
        self._record(
            tracking,
            event.originator_id,
            [
                (
                    _REGISTER,
                    {
                        "id": event.originator_id,
                        "station_id": event.station_id,
                        "at": event.timestamp,
                    },
                )
            ],
        )

    @process_event.register
    def _(self, event: ChargingStation.Connected, tracking: Tracking) -> None:
        self._record(
            tracking,
            event.originator_id,
            [
                _update(
                    "connected = true, protocol = %(protocol)s, node = %(node)s, "
                    "connected_at = %(at)s",
                    event,
                    protocol=event.protocol,
                    node=event.node,
                )
            ],
        )

    @process_event.register
    def _(self, event: ChargingStation.Disconnected, tracking: Tracking) -> None:
        self._record(
            tracking,
            event.originator_id,
            [_update("connected = false, disconnected_at = %(at)s", event)],
        )

    @process_event.register
    def _(self, event: ChargingStation.Booted, tracking: Tracking) -> None:
        self._record(
            tracking,
            event.originator_id,
            [
                _update(
                    "vendor = %(vendor)s, model = %(model)s, serial_number = %(serial)s, "
                    "firmware_version = %(firmware)s, registration_status = %(registration)s, "
                    "last_boot_at = %(at)s",
                    event,
                    vendor=event.vendor,
                    model=event.model,
                    serial=event.serial_number,
                    firmware=event.firmware_version,
                    registration=event.registration_status,
                )
            ],
        )

    @process_event.register
    def _(self, event: ChargingStation.ConnectorStatusChanged, tracking: Tracking) -> None:
        self._record(
            tracking,
            event.originator_id,
            [
                (
                    _UPSERT_CONNECTOR,
                    {
                        "id": event.originator_id,
                        "evse": event.evse_id,
                        "connector": event.connector_id,
                        "status": event.status,
                        "error": event.error_code,
                        "info": event.info,
                        "vendor_error": event.vendor_error_code,
                        "reported": event.station_time,
                        "at": event.timestamp,
                    },
                ),
            ],
        )

    @process_event.register
    def _(self, event: ChargingStation.FirmwareStatusReported, tracking: Tracking) -> None:
        statement = _update(
            "firmware_status = %(s)s, firmware_status_at = %(at)s", event, s=event.status
        )
        self._record(tracking, event.originator_id, [statement])

    @process_event.register
    def _(self, event: ChargingStation.LogUploadStatusReported, tracking: Tracking) -> None:
        statement = _update("log_upload_status = %(s)s", event, s=event.status)
        self._record(tracking, event.originator_id, [statement])

    @process_event.register
    def _(self, event: RemoteCommand.Requested, tracking: Tracking) -> None:
        """An update the operator asked for, shown beside the progress the station reports."""
        if event.operation != Operation.UPDATE_FIRMWARE:
            self.view.record(tracking, [])
            return
        station = station_uuid(event.station_id)
        sql = (
            "UPDATE station_status SET firmware_location = %(location)s, "
            "firmware_retrieve_at = %(retrieve_at)s, firmware_requested_at = %(at)s, "
            "firmware_requested_by = %(by)s WHERE station_uuid = %(id)s"
        )
        params = {
            "id": station,
            "location": event.arguments.get("location"),
            "retrieve_at": event.arguments.get("retrieve_at"),
            "at": event.timestamp,
            "by": event.requested_by,
        }
        self._record(tracking, station, [(sql, params)])
