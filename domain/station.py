"""The charging station aggregate: identity, boot facts, connection facts, connector states."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.ids import station_uuid


class CredentialsChange(StrEnum):
    REGISTERED = "registered, with a password"
    REGISTERED_WITHOUT_PASSWORD = "registered, without a password"
    PASSWORD_CHANGED = "password changed"
    PASSWORD_REMOVED = "password removed"
    REMOVED = "registration removed"

    @staticmethod
    def of(registering: bool, with_password: bool) -> CredentialsChange:
        """What registering a station, or setting its password, changes."""
        if registering:
            if with_password:
                return CredentialsChange.REGISTERED
            return CredentialsChange.REGISTERED_WITHOUT_PASSWORD
        if with_password:
            return CredentialsChange.PASSWORD_CHANGED
        return CredentialsChange.PASSWORD_REMOVED


@dataclass
class ConnectorState:
    status: str
    error_code: str | None
    info: str | None
    vendor_error_code: str | None
    reported_at: datetime | None


class ChargingStation(Aggregate):
    """One charging station. EVSE 0 stands for the station as a whole."""

    class Registered(Aggregate.Created):
        station_id: str

    class Connected(Aggregate.Event):
        connection_id: str
        protocol: str
        node: str
        remote_address: str | None

        def apply(self, station: ChargingStation) -> None:
            station.connection_id = self.connection_id
            station.protocol = self.protocol
            station.connected = True

    class Disconnected(Aggregate.Event):
        connection_id: str
        reason: str

        def apply(self, station: ChargingStation) -> None:
            station.connected = False

    class Booted(Aggregate.Event):
        vendor: str
        model: str
        serial_number: str | None
        firmware_version: str | None
        reason: str | None
        details: dict[str, Any]
        registration_status: str
        heartbeat_interval: int

        def apply(self, station: ChargingStation) -> None:
            station.vendor = self.vendor
            station.model = self.model
            station.serial_number = self.serial_number
            station.firmware_version = self.firmware_version
            station.registration_status = self.registration_status

    class ConnectorStatusChanged(Aggregate.Event):
        evse_id: int
        connector_id: int
        status: str
        error_code: str | None
        info: str | None
        vendor_error_code: str | None
        station_time: datetime | None

        def apply(self, station: ChargingStation) -> None:
            station.connectors[(self.evse_id, self.connector_id)] = ConnectorState(
                self.status, self.error_code, self.info, self.vendor_error_code, self.station_time
            )

    class AuthorizationDecided(Aggregate.Event):
        id_token: str
        token_type: str | None
        status: str

    class FileUploaded(Aggregate.Event):
        """A file the station uploaded as asked by a remote command (diagnostics, a log)."""

        command_id: str
        file_id: str
        file_name: str
        size: int
        sha256: str

    class UnknownIdTokenPresented(Aggregate.Event):
        """A token no operator registered; `accepted` says what the policy decided."""

        id_token: str
        token_type: str | None
        accepted: bool

    class MeterValuesReported(Aggregate.Event):
        """Readings outside any transaction (a station's main meter, an idle connector)."""

        evse_id: int
        connector_id: int | None
        readings: list[dict[str, Any]]

    class UnknownTransactionReported(Aggregate.Event):
        """The station spoke of a transaction we never saw start; kept so nothing is lost."""

        transaction_key: str
        message: str
        data: dict[str, Any]

    class FirmwareStatusReported(Aggregate.Event):
        status: str
        request_id: int | None
        signed: bool

        def apply(self, station: ChargingStation) -> None:
            station.firmware_status = self.status

    class LogUploadStatusReported(Aggregate.Event):
        status: str
        request_id: int | None
        log_kind: str

        def apply(self, station: ChargingStation) -> None:
            station.log_upload_status = self.status

    class SecurityEventReported(Aggregate.Event):
        event_type: str
        tech_info: str | None
        station_time: datetime | None

    class CredentialsChanged(Aggregate.Event):
        """Its registration or its password changed, and who changed it. The password itself
        is kept elsewhere, hashed: a secret in the history could never be deleted."""

        change: str  # a CredentialsChange
        by: str

    class DataTransferReceived(Aggregate.Event):
        vendor_id: str
        message_id: str | None
        data: Any
        answer: str

    # The station's own model of itself: components (the station, an EVSE, a connector, a
    # controller...) holding variables, each with attributes (Actual, Target, MinSet, MaxSet).

    class VariablesReported(Aggregate.Event):
        """One part of a report of the station's variables; `more_to_follow` until the last."""

        request_id: int | None
        generated_at: datetime
        seq_no: int
        more_to_follow: bool
        variables: list[dict[str, Any]]

    class VariableEventsReported(Aggregate.Event):
        """Changes the station noticed in its variables: monitors tripping, problems, states."""

        generated_at: datetime
        seq_no: int
        more_to_follow: bool
        events: list[dict[str, Any]]

    # Reports kept as told; the CSMS has no behaviour for them beyond recording (yet).

    class MonitoringReported(Aggregate.Event):
        request_id: int
        generated_at: datetime
        seq_no: int
        more_to_follow: bool
        monitors: list[dict[str, Any]]

    class CustomerInformationReported(Aggregate.Event):
        request_id: int
        generated_at: datetime
        seq_no: int
        more_to_follow: bool
        data: str

    class DisplayMessagesReported(Aggregate.Event):
        request_id: int
        more_to_follow: bool
        messages: list[dict[str, Any]]

    class ChargingLimitReported(Aggregate.Event):
        """A limit set by someone other than the CSMS (grid operator, local energy manager)."""

        source: str
        evse_id: int | None
        grid_critical: bool | None
        details: dict[str, Any]

    class ChargingLimitCleared(Aggregate.Event):
        source: str
        evse_id: int | None

    class ChargingProfilesReported(Aggregate.Event):
        request_id: int
        source: str
        evse_id: int
        more_to_follow: bool
        profiles: list[dict[str, Any]]

    class EVChargingNeedsReported(Aggregate.Event):
        evse_id: int
        needs: dict[str, Any]
        answer: str

    class EVChargingScheduleReported(Aggregate.Event):
        evse_id: int
        time_base: datetime
        schedule: dict[str, Any]
        answer: str

    class ReservationStatusReported(Aggregate.Event):
        reservation_id: int
        status: str

    class FirmwarePublicationStatusReported(Aggregate.Event):
        status: str
        request_id: int | None
        locations: list[str]

    class CertificateServiceRefused(Aggregate.Event):
        """The station asked for a certificate service the CSMS does not offer."""

        service: str  # signing, ev-contract, ocsp-status
        request: dict[str, Any]
        answer: str

    @event(Registered)
    def __init__(self, station_id: str) -> None:
        self.station_id = station_id
        self.connected = False
        self.connection_id: str | None = None
        self.protocol: str | None = None
        self.vendor: str | None = None
        self.model: str | None = None
        self.serial_number: str | None = None
        self.firmware_version: str | None = None
        self.registration_status: str | None = None
        self.firmware_status: str | None = None
        self.log_upload_status: str | None = None
        self.connectors: dict[tuple[int, int], ConnectorState] = {}

    @staticmethod
    def create_id(station_id: str) -> UUID:
        return station_uuid(station_id)

    def connect(
        self, connection_id: str, protocol: str, node: str, remote: str | None, at: datetime
    ) -> None:
        self.trigger_event(
            self.Connected,
            connection_id=connection_id,
            protocol=protocol,
            node=node,
            remote_address=remote,
            timestamp=at,
        )

    def disconnect(self, connection_id: str, reason: str, at: datetime) -> None:
        # A connection that was replaced by a newer one says nothing about the station now.
        if self.connected and connection_id == self.connection_id:
            self.trigger_event(
                self.Disconnected, connection_id=connection_id, reason=reason, timestamp=at
            )

    def change_connector_status(
        self,
        evse_id: int,
        connector_id: int,
        state: ConnectorState,
        at: datetime,
    ) -> None:
        if self.connectors.get((evse_id, connector_id)) == state:
            return  # the same report again: a retry
        self.trigger_event(
            self.ConnectorStatusChanged,
            evse_id=evse_id,
            connector_id=connector_id,
            status=state.status,
            error_code=state.error_code,
            info=state.info,
            vendor_error_code=state.vendor_error_code,
            station_time=state.reported_at,
            timestamp=at,
        )
