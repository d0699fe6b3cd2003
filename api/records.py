"""GraphQL types of what operators ask and register: remote commands, id tokens, uploads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from domain.id_tokens import IdToken
from domain.remote import CommandState, RemoteCommand
from domain.tariffs import Prices, Tariff


@strawberry.type
class RemoteCommandResult:
    id: UUID
    station_id: str
    operation: str
    arguments: JSON
    state: str = strawberry.field(description="Requested, Sent, Answered or Failed")
    status: str | None = strawberry.field(
        description="The station's answer in its own word: Accepted, Rejected, ..."
    )
    accepted: bool = strawberry.field(description="Answered, and not with a refusal")
    response: JSON | None = strawberry.field(description="The station's whole answer")
    failure: str | None = strawberry.field(
        description="Why there was no answer: StationOffline, Timeout, NotSupported, "
        "InvalidRequest, CallError, InvalidAnswer, ConnectionLost"
    )
    detail: str | None
    action: str | None = strawberry.field(description="The OCPP call it became")
    requested_by: str
    requested_at: datetime
    settled_at: datetime | None

    @staticmethod
    def of(command: RemoteCommand) -> RemoteCommandResult:
        return RemoteCommandResult(
            id=command.id,
            station_id=command.station_id,
            operation=command.operation,
            arguments=_plain(command.arguments),
            state=command.state.value,
            status=command.status,
            accepted=_accepted(command.state.value, command.status),
            response=_plain(command.response),
            failure=command.failure,
            detail=command.detail,
            action=command.action,
            requested_by=command.requested_by,
            requested_at=command.created_on,
            settled_at=command.settled_at,
        )

    @staticmethod
    def from_row(row: dict[str, Any]) -> RemoteCommandResult:
        return RemoteCommandResult(
            id=row["command_id"],
            station_id=row["station_id"],
            operation=row["operation"],
            arguments=row["arguments"],
            state=row["state"],
            status=row["status"],
            accepted=_accepted(row["state"], row["status"]),
            response=row["response"],
            failure=row["failure"],
            detail=row["detail"],
            action=row["action"],
            requested_by=row["requested_by"],
            requested_at=row["requested_at"],
            settled_at=row["settled_at"],
        )


# The words with which stations say yes; any other status is a refusal of some kind.
_YES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})


def _accepted(state: str, status: str | None) -> bool:
    return state == CommandState.ANSWERED.value and (status is None or status in _YES)


def _plain(value: Any) -> Any:
    """JSON-ready: Decimals (limits, readings) as numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


@strawberry.type
class IdTokenRecord:
    id_token: str
    token_type: str | None
    parent_id_token: str | None
    group_id_token: str | None
    expires_at: datetime | None
    blocked: bool
    registered_by: str
    updated_at: datetime

    @staticmethod
    def of(token: IdToken) -> IdTokenRecord:
        return IdTokenRecord(
            id_token=token.id_token,
            token_type=token.token_type,
            parent_id_token=token.parent_id_token,
            group_id_token=token.group_id_token,
            expires_at=token.expires_at,
            blocked=token.blocked,
            registered_by=token.registered_by,
            updated_at=token.modified_on,
        )

    @staticmethod
    def from_row(row: dict[str, Any]) -> IdTokenRecord:
        return IdTokenRecord(
            id_token=row["id_token"],
            token_type=row["token_type"],
            parent_id_token=row["parent_id_token"],
            group_id_token=row["group_id_token"],
            expires_at=row["expires_at"],
            blocked=row["blocked"],
            registered_by=row["registered_by"],
            updated_at=row["updated_at"],
        )


@strawberry.type
class Upload:
    id: UUID
    command_id: UUID
    file_name: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    download_path: str = strawberry.field(
        description="GET it with an operator or auditor token in the Authorization header"
    )


@strawberry.type
class TariffPrices:
    energy_per_kwh: Decimal
    charging_per_minute: Decimal
    idle_per_minute: Decimal = strawberry.field(description="Parking after charging ended")
    session_fee: Decimal
    tax_rate: Decimal = strawberry.field(description="0.19 for 19 %")


@strawberry.type
class TariffRecord:
    id: UUID
    name: str
    currency: str
    prices: TariffPrices
    station_ids: list[str] | None = strawberry.field(description="null: every station")
    valid_from: datetime
    valid_to: datetime | None

    @staticmethod
    def of(tariff: Tariff) -> TariffRecord:
        return TariffRecord(
            id=tariff.id,
            name=tariff.name,
            currency=tariff.currency,
            prices=TariffPrices(**tariff.prices.to_record()),
            station_ids=tariff.station_ids,
            valid_from=tariff.valid_from,
            valid_to=tariff.valid_to,
        )

    @staticmethod
    def from_row(row: dict[str, Any]) -> TariffRecord:
        prices = Prices.from_record(row["prices"]).to_record()
        return TariffRecord(
            id=row["tariff_id"],
            name=row["name"],
            currency=row["currency"],
            prices=TariffPrices(**prices),
            station_ids=row["station_ids"],
            valid_from=row["valid_from"],
            valid_to=row["valid_to"],
        )


@strawberry.type
class ChargingSession:
    cursor: str = strawberry.field(description="Its feed position: pass it as `after`")
    session_id: UUID
    version: int = strawberry.field(description="1 when it ended; more for each correction")
    latest: bool
    reason: str = strawberry.field(description="`ended`, or what changed it afterwards")
    priced_at: datetime
    station_id: str
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    started_at: datetime
    stopped_at: datetime
    stop_reason: str | None
    energy_wh: Decimal
    energy_kwh: Decimal
    duration_seconds: int
    charging_seconds: int
    idle_seconds: int
    tariff_id: UUID | None
    tariff_name: str | None
    tariff_version: int | None
    currency: str | None
    energy_cost: Decimal | None
    charging_time_cost: Decimal | None
    idle_cost: Decimal | None
    session_fee: Decimal | None
    subtotal: Decimal | None = strawberry.field(description="Before tax")
    tax_rate: Decimal | None
    tax: Decimal | None
    total: Decimal | None = strawberry.field(description="With tax")

    @staticmethod
    def from_row(row: dict[str, Any]) -> ChargingSession:
        columns = {k: v for k, v in row.items() if k != "feed_position"}
        return ChargingSession(
            cursor=str(row["feed_position"]),
            energy_kwh=row["energy_wh"] / 1000,
            **columns,
        )


@strawberry.type
class SessionPage:
    sessions: list[ChargingSession]
    end_cursor: str | None = strawberry.field(
        description="Where the next page starts; the `after` you gave if there is nothing new"
    )
    has_more: bool
