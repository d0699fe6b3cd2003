"""Version-neutral commands. Each translator maps its protocol's messages to these.

A command checks, then triggers events on aggregates held by a unit of work; it never saves.
`received_at` is when the CSMS received the message; station times are kept beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.id_tokens import IdToken, TokenDecision, TokenStatus
from domain.ids import id_token_uuid, station_uuid, transaction_start_uuid, transaction_uuid
from domain.station import ChargingStation, ConnectorState
from domain.transaction import REPORT_FIELDS, Transaction, TransactionStart
from domain.unit_of_work import UnitOfWork

R_co = TypeVar("R_co", covariant=True)

ACCEPTED = "Accepted"
PENDING = "Pending"


class Command(Protocol[R_co]):
    def execute(self, uow: UnitOfWork) -> R_co: ...


@dataclass(frozen=True)
class ConnectStation:
    station_id: str
    connection_id: str
    protocol: str
    node: str
    remote_address: str | None
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).connect(
            self.connection_id, self.protocol, self.node, self.remote_address, self.received_at
        )


@dataclass(frozen=True)
class DisconnectStation:
    station_id: str
    connection_id: str
    reason: str
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).disconnect(self.connection_id, self.reason, self.received_at)


@dataclass(frozen=True)
class BootResult:
    registration_status: str
    heartbeat_interval: int


@dataclass(frozen=True)
class RecordBoot:
    station_id: str
    vendor: str
    model: str
    serial_number: str | None
    firmware_version: str | None
    reason: str | None
    details: dict[str, Any]
    heartbeat_interval: int
    received_at: datetime
    # Set when the CSMS is too busy to take the station now: it is told to boot again then.
    retry_after: int | None = None

    def execute(self, uow: UnitOfWork) -> BootResult:
        status = ACCEPTED if self.retry_after is None else PENDING
        interval = self.heartbeat_interval if self.retry_after is None else self.retry_after
        uow.station(self.station_id).trigger_event(
            ChargingStation.Booted,
            vendor=self.vendor,
            model=self.model,
            serial_number=self.serial_number,
            firmware_version=self.firmware_version,
            reason=self.reason,
            details=self.details,
            registration_status=status,
            heartbeat_interval=interval,
            timestamp=self.received_at,
        )
        return BootResult(status, interval)


@dataclass(frozen=True)
class ChangeConnectorStatus:
    station_id: str
    evse_id: int
    connector_id: int
    status: str
    error_code: str | None
    info: str | None
    vendor_error_code: str | None
    station_time: datetime | None
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        state = ConnectorState(
            self.status, self.error_code, self.info, self.vendor_error_code, self.station_time
        )
        uow.station(self.station_id).change_connector_status(
            self.evse_id, self.connector_id, state, self.received_at
        )


def decide_token(
    uow: UnitOfWork, station_id: str, id_token: str, token_type: str | None, at: datetime
) -> TokenDecision:
    """The decision on a token presented at a station; an unknown one is recorded as such."""
    token = uow.get(IdToken, id_token_uuid(id_token))
    if token is not None:
        return TokenDecision(
            token.status_at(at),
            parent_id_token=token.parent_id_token,
            group_id_token=token.group_id_token,
            expires_at=token.expires_at,
        )
    accepted = uow.accept_unknown_tokens
    uow.station(station_id).trigger_event(
        ChargingStation.UnknownIdTokenPresented,
        id_token=id_token,
        token_type=token_type,
        accepted=accepted,
        timestamp=at,
    )
    return TokenDecision(TokenStatus.ACCEPTED if accepted else TokenStatus.UNKNOWN)


@dataclass(frozen=True)
class AuthorizeIdToken:
    """Decides on a token by the operator's registry and the unknown-token policy; recorded."""

    station_id: str
    id_token: str
    token_type: str | None
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> TokenDecision:
        decision = decide_token(
            uow, self.station_id, self.id_token, self.token_type, self.received_at
        )
        uow.station(self.station_id).trigger_event(
            ChargingStation.AuthorizationDecided,
            id_token=self.id_token,
            token_type=self.token_type,
            status=decision.status.value,
            timestamp=self.received_at,
        )
        return decision


@dataclass(frozen=True)
class StartResult:
    transaction_key: str
    id_token: TokenDecision | None
    created: bool


@dataclass(frozen=True)
class StartTransaction:
    """Starts a transaction under a CSMS-assigned number, recognising a resent request.

    `fingerprint` identifies the request's content: the same request sent again after a lost
    answer yields the same transaction.
    """

    station_id: str
    fingerprint: str
    evse_id: int
    connector_id: int
    id_token: str | None
    meter_start_wh: int | None
    started_at: datetime
    reservation_id: int | None
    readings: list[dict[str, Any]]
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> StartResult:
        decision = None
        if self.id_token is not None:
            decision = decide_token(uow, self.station_id, self.id_token, None, self.received_at)
        start_id = transaction_start_uuid(self.station_id, self.fingerprint)
        earlier = uow.get(TransactionStart, start_id)
        if earlier is not None:
            return StartResult(earlier.transaction_key, decision, created=False)
        key = str(uow.allocate_number())
        transaction = Transaction(
            station_id=self.station_id,
            transaction_key=key,
            evse_id=self.evse_id,
            connector_id=self.connector_id,
            id_token=self.id_token,
            meter_start_wh=self.meter_start_wh,
            started_at=self.started_at,
            reservation_id=self.reservation_id,
        )
        if self.readings:
            transaction.add_meter_values(self.readings, self.received_at)
        uow.add(transaction)
        uow.add(TransactionStart(self.station_id, self.fingerprint, key))
        uow.station(self.station_id)  # a transaction implies its station exists
        return StartResult(key, decision, created=True)


def _report_unknown_transaction(
    uow: UnitOfWork, station_id: str, key: str, message: str, data: dict[str, Any], at: datetime
) -> None:
    uow.station(station_id).trigger_event(
        ChargingStation.UnknownTransactionReported,
        transaction_key=key,
        message=message,
        data=data,
        timestamp=at,
    )


@dataclass(frozen=True)
class RecordMeterValues:
    """Readings for a transaction, or for the station when no transaction is named."""

    station_id: str
    evse_id: int
    connector_id: int | None
    transaction_key: str | None
    readings: list[dict[str, Any]]
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> bool:
        """True if the readings were attached to a known transaction."""
        if self.transaction_key is None:
            uow.station(self.station_id).trigger_event(
                ChargingStation.MeterValuesReported,
                evse_id=self.evse_id,
                connector_id=self.connector_id,
                readings=self.readings,
                timestamp=self.received_at,
            )
            return False
        transaction = uow.get(Transaction, transaction_uuid(self.station_id, self.transaction_key))
        if transaction is None:
            data = {"evse_id": self.evse_id, "readings": self.readings}
            _report_unknown_transaction(
                uow, self.station_id, self.transaction_key, "MeterValues", data, self.received_at
            )
            return False
        transaction.add_meter_values(self.readings, self.received_at)
        return True


@dataclass(frozen=True)
class StopTransaction:
    station_id: str
    transaction_key: str
    stopped_at: datetime
    meter_stop_wh: int | None
    reason: str | None
    id_token: str | None
    readings: list[dict[str, Any]]
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> bool:
        """True if a known transaction was stopped now or before (a retry changes nothing)."""
        at = self.received_at
        transaction = uow.get(Transaction, transaction_uuid(self.station_id, self.transaction_key))
        if transaction is None:
            data = {
                "stopped_at": self.stopped_at,
                "meter_stop_wh": self.meter_stop_wh,
                "reason": self.reason,
                "id_token": self.id_token,
                "readings": self.readings,
            }
            _report_unknown_transaction(
                uow, self.station_id, self.transaction_key, "StopTransaction", data, at
            )
            return False
        if self.readings:
            transaction.add_meter_values(self.readings, at)
        transaction.stop(self.stopped_at, self.meter_stop_wh, self.reason, self.id_token, at)
        return True


@dataclass(frozen=True)
class TransactionEventResult:
    folded: bool  # False for a retry (or a sequence number reused for different content)
    id_token: TokenDecision | None  # the decision on the id token, if the event carried one


@dataclass(frozen=True)
class RecordTransactionEvent:
    """One numbered event of a station-numbered transaction; the first one heard opens it.

    Events may come in any order (queued while offline, resent after a reconnect): the
    transaction is folded from the set of its events, and a resent event changes nothing.
    """

    station_id: str
    transaction_key: str
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
    details: dict[str, Any]
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> TransactionEventResult:
        transaction_id = transaction_uuid(self.station_id, self.transaction_key)
        transaction = uow.get(Transaction, transaction_id)
        if transaction is None:
            transaction = Transaction.open(self.station_id, self.transaction_key, self.received_at)
            uow.add(transaction)
            uow.station(self.station_id)  # a transaction implies its station exists
        folded = transaction.report(
            {name: getattr(self, name) for name in REPORT_FIELDS}, self.received_at
        )
        decision = None
        if self.id_token is not None:
            decision = decide_token(
                uow, self.station_id, self.id_token, self.token_type, self.received_at
            )
        return TransactionEventResult(folded, decision)


@dataclass(frozen=True)
class RecordStationReport:
    """A report the CSMS keeps as the station told it: `fact` is the station event to record."""

    station_id: str
    fact: type[Aggregate.Event]
    fields: dict[str, Any]
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).trigger_event(
            self.fact, timestamp=self.received_at, **self.fields
        )


@dataclass(frozen=True)
class AllOf:
    """Several commands about one station, committed together or not at all."""

    station_id: str
    commands: tuple[Command[Any], ...]

    def execute(self, uow: UnitOfWork) -> list[Any]:
        return [command.execute(uow) for command in self.commands]


@dataclass(frozen=True)
class RecordFirmwareStatus:
    station_id: str
    status: str
    request_id: int | None
    signed: bool
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).trigger_event(
            ChargingStation.FirmwareStatusReported,
            status=self.status,
            request_id=self.request_id,
            signed=self.signed,
            timestamp=self.received_at,
        )


@dataclass(frozen=True)
class RecordLogUploadStatus:
    station_id: str
    status: str
    request_id: int | None
    log_kind: str
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).trigger_event(
            ChargingStation.LogUploadStatusReported,
            status=self.status,
            request_id=self.request_id,
            log_kind=self.log_kind,
            timestamp=self.received_at,
        )


@dataclass(frozen=True)
class RecordSecurityEvent:
    station_id: str
    event_type: str
    tech_info: str | None
    station_time: datetime | None
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).trigger_event(
            ChargingStation.SecurityEventReported,
            event_type=self.event_type,
            tech_info=self.tech_info,
            station_time=self.station_time,
            timestamp=self.received_at,
        )


@dataclass(frozen=True)
class ReceiveDataTransfer:
    """No vendor extension is known yet: the honest answer is UnknownVendorId, recorded."""

    station_id: str
    vendor_id: str
    message_id: str | None
    data: Any
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> str:
        answer = "UnknownVendorId"
        uow.station(self.station_id).trigger_event(
            ChargingStation.DataTransferReceived,
            vendor_id=self.vendor_id,
            message_id=self.message_id,
            data=self.data,
            answer=answer,
            timestamp=self.received_at,
        )
        return answer


def likely(command: Command[Any]) -> Iterator[UUID]:
    """The aggregates the command will most likely ask for, to read them ahead in one go.

    Taken from the fields the commands have in common; a wrong guess costs a read, not a
    wrong answer, since commands still ask for what they need.
    """
    if isinstance(command, AllOf):
        for part in command.commands:
            yield from likely(part)
        return
    station_id = getattr(command, "station_id", None)
    if not isinstance(station_id, str):
        return
    yield station_uuid(station_id)
    key = getattr(command, "transaction_key", None)
    if isinstance(key, str):
        yield transaction_uuid(station_id, key)
    if isinstance(command, StartTransaction):
        yield transaction_start_uuid(station_id, command.fingerprint)
    token = getattr(command, "id_token", None)
    if isinstance(token, str):
        yield id_token_uuid(token)
