"""Operators register stations and set their passwords (OCPP security profiles 1 and 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.auth import OPERATORS, requester
from api.ports import backend
from domain.operator_commands import RecordCredentialsChange
from domain.station import CredentialsChange

PASSWORD_HELP = (
    "its HTTP Basic password, 16 to 40 printable ASCII characters; omitted, one is generated "
    "and returned this once"
)


@strawberry.type(description="A station's registration as changed")
class StationCredentials:
    station_id: str
    change: str = strawberry.field(description="What changed (registered, password changed, ...)")
    generated_password: str | None = strawberry.field(
        description="The password generated, shown this once; null if given or none"
    )


@strawberry.type
class StationMutation:
    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Registers a station: with --unknown-stations reject, only registered "
        "stations may connect, and a station with a password must give it",
    )
    async def register_station(
        self,
        info: Info,
        station_id: str,
        password: Annotated[str | None, strawberry.argument(description=PASSWORD_HELP)] = None,
        without_password: bool = False,
    ) -> StationCredentials:
        return await _change(info, station_id, True, password, without_password)

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="A registered station's new password, or none; its open connection is "
        "closed, so that it authenticates again",
    )
    async def set_station_password(
        self,
        info: Info,
        station_id: str,
        password: Annotated[str | None, strawberry.argument(description=PASSWORD_HELP)] = None,
        without_password: bool = False,
    ) -> StationCredentials:
        return await _change(info, station_id, False, password, without_password)

    @strawberry.mutation(
        permission_classes=[OPERATORS],
        description="Forgets a station's registration and password (its history stays)",
    )
    async def remove_station(self, info: Info, station_id: str) -> StationCredentials:
        await backend(info).change_credentials(
            station_id, CredentialsChange.REMOVED, None, generate=False
        )
        return await _recorded(info, station_id, CredentialsChange.REMOVED, None)


async def _change(
    info: Info, station_id: str, registering: bool, password: str | None, without: bool
) -> StationCredentials:
    if without and password is not None:
        raise ValueError("give a password or withoutPassword, not both")
    with_password = not without
    change = CredentialsChange.of(registering, with_password)
    generated = await backend(info).change_credentials(
        station_id, change, password, generate=with_password and password is None
    )
    return await _recorded(info, station_id, change, generated)


async def _recorded(
    info: Info, station_id: str, change: CredentialsChange, generated: str | None
) -> StationCredentials:
    """Records the change as a fact of the station's, by the operator who made it."""
    fact = RecordCredentialsChange(station_id, change, await requester(info), datetime.now(UTC))
    await backend(info).run(fact)
    return StationCredentials(
        station_id=station_id, change=change.value, generated_password=generated
    )
