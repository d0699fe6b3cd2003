"""Mutations: remote commands to stations and the id token registry; subscriptions."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID, uuid4

import strawberry
from strawberry.types import Info

from api.auth import OPERATORS, READERS, requester
from api.paging import aware
from api.ports import backend
from api.records import IdTokenRecord, RemoteCommandResult, TariffRecord
from api.schema import Station, station_by_uuid
from domain.id_tokens import IdToken as IdTokenAggregate
from domain.ids import station_uuid
from domain.operator_commands import (
    ChangeIdToken,
    ChangeTariff,
    CreateTariff,
    OperatorError,
    RegisterIdToken,
)
from domain.remote import Operation
from domain.tariffs import Prices, TariffError


def iso(moment: datetime) -> str:
    """UTC with Z, as stations expect; a time without an offset is taken as UTC."""
    utc = (aware(moment) or moment).astimezone(UTC)
    return utc.isoformat(timespec="seconds").replace("+00:00", "Z")


@strawberry.enum
class ResetKind(Enum):
    HARD = "Hard"  # 2.x: Immediate
    SOFT = "Soft"  # 2.x: OnIdle


@strawberry.enum
class LogType(Enum):
    DIAGNOSTICS = "Diagnostics"
    SECURITY = "Security"


@strawberry.enum
class RateUnit(Enum):
    W = "W"
    A = "A"


@strawberry.enum
class ListUpdate(Enum):
    FULL = "Full"
    DIFFERENTIAL = "Differential"


@strawberry.input
class ConfigurationKeyInput:
    variable: str = strawberry.field(description="1.6: the configuration key")
    component: str | None = strawberry.field(default=None, description="2.x only")
    component_instance: str | None = None
    variable_instance: str | None = None
    evse_id: int | None = None


@strawberry.input
class LocalListEntryInput:
    id_token: str
    token_type: str | None = None
    status: str | None = strawberry.field(
        default="Accepted", description="null removes the token in a differential update"
    )
    expires_at: datetime | None = None
    parent_id_token: str | None = None
    group_id_token: str | None = None


async def _remote(
    info: Info, station_id: str, operation: Operation, command_id: UUID | None = None, **args: Any
) -> RemoteCommandResult:
    present = {k: v for k, v in args.items() if v is not None}
    command = await backend(info).remote(
        station_id, operation, present, await requester(info), command_id or uuid4()
    )
    return RemoteCommandResult.of(command)


async def _token_change(info: Info, id_token: str, change: Any, **fields: Any) -> IdTokenRecord:
    try:
        token = await backend(info).run(
            ChangeIdToken(id_token, change, fields, await requester(info), datetime.now(UTC))
        )
    except OperatorError as error:
        raise ValueError(str(error)) from None
    return IdTokenRecord.of(token)


Result = RemoteCommandResult

# A station's own password (1.6: AuthorizationKey; 2.x: SecurityCtrlr.BasicAuthPassword). Sent
# as a configuration change, it would be kept in clear for ever in the command's immutable
# event and in the frame journal, and the CSMS would still ask the station for its old one.
PASSWORD_VARIABLES = frozenset({"authorizationkey", "basicauthpassword"})


def _refuse_passwords(variable: str) -> None:
    if variable.casefold() in PASSWORD_VARIABLES:
        raise ValueError(
            f"{variable} is the station's password: changeConfiguration would keep it in clear "
            "in the history and the frame journal, and the CSMS would not know it. Set it with "
            "setStationPassword (or `csms station password`), and on the station itself"
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[OPERATORS], description="Start a charge remotely")
    async def start_charging(
        self,
        info: Info,
        station_id: str,
        id_token: str,
        evse_id: int | None = None,
        token_type: str | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.START_CHARGING,
            id_token=id_token,
            evse_id=evse_id,
            token_type=token_type,
        )

    @strawberry.mutation(permission_classes=[OPERATORS], description="Stop a transaction")
    async def stop_charging(self, info: Info, station_id: str, transaction_id: str) -> Result:
        return await _remote(
            info, station_id, Operation.STOP_CHARGING, transaction_id=transaction_id
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def unlock_connector(
        self, info: Info, station_id: str, evse_id: int, connector_id: int = 1
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.UNLOCK_CONNECTOR,
            evse_id=evse_id,
            connector_id=connector_id,
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Reset the station (or, in 2.x, one EVSE); SOFT waits until it is idle",
    )
    async def reset(
        self,
        info: Info,
        station_id: str,
        kind: ResetKind = ResetKind.SOFT,
        evse_id: int | None = None,
    ) -> Result:
        return await _remote(info, station_id, Operation.RESET, kind=kind.value, evse_id=evse_id)

    @strawberry.mutation(permission_classes=[OPERATORS], description="EVSE 0 is the whole station")
    async def change_availability(
        self,
        info: Info,
        station_id: str,
        operative: bool,
        evse_id: int = 0,
        connector_id: int | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.CHANGE_AVAILABILITY,
            operative=operative,
            evse_id=evse_id,
            connector_id=connector_id,
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Read configuration keys (1.6) or variables (2.x); none: all of them "
        "(2.x: a full report, which arrives as NotifyReport into the station's variables)",
    )
    async def get_configuration(
        self, info: Info, station_id: str, keys: list[ConfigurationKeyInput] | None = None
    ) -> Result:
        entries = [{k: v for k, v in vars(key).items() if v is not None} for key in keys or []]
        return await _remote(info, station_id, Operation.GET_CONFIGURATION, keys=entries)

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def change_configuration(
        self,
        info: Info,
        station_id: str,
        variable: str,
        value: str,
        component: str | None = None,
        component_instance: str | None = None,
        variable_instance: str | None = None,
        evse_id: int | None = None,
    ) -> Result:
        _refuse_passwords(variable)
        return await _remote(
            info,
            station_id,
            Operation.CHANGE_CONFIGURATION,
            variable=variable,
            value=value,
            component=component,
            component_instance=component_instance,
            variable_instance=variable_instance,
            evse_id=evse_id,
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Ask the station to send a message (BootNotification, StatusNotification...)",
    )
    async def trigger_message(
        self,
        info: Info,
        station_id: str,
        message: str,
        evse_id: int | None = None,
        connector_id: int | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.TRIGGER_MESSAGE,
            message=message,
            evse_id=evse_id,
            connector_id=connector_id,
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Install firmware from a URL at a time; the station reports its progress",
    )
    async def update_firmware(
        self,
        info: Info,
        station_id: str,
        location: str,
        retrieve_at: datetime,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.UPDATE_FIRMWARE,
            location=location,
            retrieve_at=iso(retrieve_at),
            retries=retries,
            retry_interval=retry_interval,
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Have the station upload its diagnostics or security log to this CSMS; "
        "the file appears in the station's `uploads`",
    )
    async def fetch_diagnostics(
        self,
        info: Info,
        station_id: str,
        log_type: LogType = LogType.DIAGNOSTICS,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Result:
        command_id = uuid4()
        upload_to = f"{backend(info).public_url}/uploads/{command_id}"
        return await _remote(
            info,
            station_id,
            Operation.FETCH_DIAGNOSTICS,
            command_id,
            log_type=log_type.value,
            upload_url=upload_to,
            **{"from": iso(since) if since else None, "to": iso(until) if until else None},
        )

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Limit charging on an EVSE (0: the whole station); setting it again "
        "replaces it",
    )
    async def set_charging_limit(
        self,
        info: Info,
        station_id: str,
        limit: Decimal,
        unit: RateUnit = RateUnit.W,
        evse_id: int = 0,
        profile_id: int | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.SET_CHARGING_LIMIT,
            limit=limit,
            unit=unit.value,
            evse_id=evse_id,
            profile_id=profile_id,
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def clear_charging_limit(
        self,
        info: Info,
        station_id: str,
        evse_id: int | None = None,
        profile_id: int | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.CLEAR_CHARGING_LIMIT,
            evse_id=evse_id,
            profile_id=profile_id,
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def get_composite_schedule(
        self,
        info: Info,
        station_id: str,
        duration_seconds: int,
        evse_id: int = 0,
        unit: RateUnit | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.GET_COMPOSITE_SCHEDULE,
            evse_id=evse_id,
            duration=duration_seconds,
            unit=unit.value if unit else None,
        )

    @strawberry.mutation(permission_classes=[OPERATORS], description="Reserve an EVSE for a token")
    async def reserve_now(
        self,
        info: Info,
        station_id: str,
        id_token: str,
        expires_at: datetime,
        evse_id: int | None = None,
        token_type: str | None = None,
        reservation_id: int | None = None,
        parent_id_token: str | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.RESERVE,
            id_token=id_token,
            expires_at=iso(expires_at),
            evse_id=evse_id,
            token_type=token_type,
            reservation_id=reservation_id,
            parent_id_token=parent_id_token,
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def cancel_reservation(self, info: Info, station_id: str, reservation_id: int) -> Result:
        return await _remote(
            info, station_id, Operation.CANCEL_RESERVATION, reservation_id=reservation_id
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def send_local_list(
        self,
        info: Info,
        station_id: str,
        version: int,
        entries: list[LocalListEntryInput],
        update_type: ListUpdate = ListUpdate.FULL,
    ) -> Result:
        items = []
        for entry in entries:
            item = dict(vars(entry))
            item["expires_at"] = iso(entry.expires_at) if entry.expires_at else None
            items.append({k: v for k, v in item.items() if v is not None})
        return await _remote(
            info,
            station_id,
            Operation.SEND_LOCAL_LIST,
            version=version,
            update_type=update_type.value,
            entries=items,
        )

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def get_local_list_version(self, info: Info, station_id: str) -> Result:
        return await _remote(info, station_id, Operation.GET_LOCAL_LIST_VERSION)

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def clear_cache(self, info: Info, station_id: str) -> Result:
        return await _remote(info, station_id, Operation.CLEAR_CACHE)

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def data_transfer(
        self,
        info: Info,
        station_id: str,
        vendor_id: str,
        message_id: str | None = None,
        data: str | None = None,
    ) -> Result:
        return await _remote(
            info,
            station_id,
            Operation.DATA_TRANSFER,
            vendor_id=vendor_id,
            message_id=message_id,
            data=data,
        )

    @strawberry.mutation(permission_classes=[OPERATORS], description="Register an id token")
    async def create_id_token(
        self,
        info: Info,
        id_token: str,
        token_type: str | None = None,
        parent_id_token: str | None = None,
        group_id_token: str | None = None,
        expires_at: datetime | None = None,
    ) -> IdTokenRecord:
        register = RegisterIdToken(
            id_token,
            token_type,
            parent_id_token,
            group_id_token,
            expires_at,
            await requester(info),
            datetime.now(UTC),
        )
        try:
            return IdTokenRecord.of(await backend(info).run(register))
        except OperatorError as error:
            raise ValueError(str(error)) from None

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def block_id_token(self, info: Info, id_token: str) -> IdTokenRecord:
        return await _token_change(info, id_token, IdTokenAggregate.Blocked)

    @strawberry.mutation(permission_classes=[OPERATORS])
    async def unblock_id_token(self, info: Info, id_token: str) -> IdTokenRecord:
        return await _token_change(info, id_token, IdTokenAggregate.Unblocked)

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Set when the token expires (now, if no time is given); null `at` "
        "with `never: true` removes the expiry",
    )
    async def expire_id_token(
        self, info: Info, id_token: str, at: datetime | None = None, never: bool = False
    ) -> IdTokenRecord:
        expires_at = None if never else (at or datetime.now(UTC))
        return await _token_change(
            info, id_token, IdTokenAggregate.ExpirySet, expires_at=expires_at
        )


@strawberry.input
class PricesInput:
    energy_per_kwh: Decimal = Decimal(0)
    charging_per_minute: Decimal = Decimal(0)
    idle_per_minute: Decimal = strawberry.field(
        default=Decimal(0), description="Per minute parked after the EV stopped drawing energy"
    )
    session_fee: Decimal = Decimal(0)
    tax_rate: Decimal = strawberry.field(default=Decimal(0), description="0.19 for 19 %")

    def prices(self) -> Prices:
        return Prices(**vars(self))


async def _tariff(info: Info, command: Any) -> TariffRecord:
    try:
        return TariffRecord.of(await backend(info).run(command))
    except (OperatorError, TariffError) as error:
        raise ValueError(str(error)) from None


@strawberry.type
class TariffMutation:
    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="A tariff for some stations (or all: no stationIds), from validFrom (now) on",
    )
    async def create_tariff(
        self,
        info: Info,
        name: str,
        currency: str,
        prices: PricesInput,
        station_ids: list[str] | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
    ) -> TariffRecord:
        now = datetime.now(UTC)
        create = CreateTariff(
            uuid4(),
            name,
            currency,
            prices.prices(),
            station_ids,
            aware(valid_from) or now,
            aware(valid_to),
            await requester(info),
            now,
        )
        return await _tariff(info, create)

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="New prices from effectiveFrom (now) on; sessions started before keep theirs",
    )
    async def change_tariff_prices(
        self, info: Info, id: UUID, prices: PricesInput, effective_from: datetime | None = None
    ) -> TariffRecord:
        now = datetime.now(UTC)
        change = ChangeTariff(
            id, prices.prices(), aware(effective_from) or now, None, await requester(info), now
        )
        return await _tariff(info, change)

    @strawberry.mutation(permission_classes=[OPERATORS], description="The tariff ends (now)")
    async def end_tariff(
        self, info: Info, id: UUID, valid_to: datetime | None = None
    ) -> TariffRecord:
        now = datetime.now(UTC)
        end = ChangeTariff(id, None, now, aware(valid_to) or now, await requester(info), now)
        return await _tariff(info, end)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[OPERATORS],
        description="Remote command outcomes as they are settled, on any node",
    )
    async def command_results(
        self, info: Info, station_id: str | None = None
    ) -> AsyncGenerator[RemoteCommandResult, None]:
        async with backend(info).command_settlements() as settled:
            while True:
                command = await backend(info).read_command(UUID(await settled.get()))
                if command is not None and station_id in (None, command.station_id):
                    yield RemoteCommandResult.of(command)

    @strawberry.subscription(
        permission_classes=[READERS],
        description="A station's live status each time it changes (connection, connectors, "
        "firmware), on any node",
    )
    async def station_changes(
        self, info: Info, station_id: str | None = None
    ) -> AsyncGenerator[Station, None]:
        wanted = str(station_uuid(station_id)) if station_id else None
        async with backend(info).station_changes() as changed:
            while True:
                changed_uuid = await changed.get()
                if wanted not in (None, changed_uuid):
                    continue
                station = await station_by_uuid(info, UUID(changed_uuid))
                if station is not None:
                    yield station
