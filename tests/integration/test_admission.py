"""In a boot storm, stations beyond what the server can take are answered Pending, not queued."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ocpp.v16 import call

from tests.support import ServerProcess, eventually, graphql, station16

STATION = "query($id: String!) { station(id: $id) { registrationStatus } }"


async def test_boots_beyond_the_backlog_are_answered_pending_and_accepted_later(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    # A backlog of one waiting command is enough to turn a station away.
    server = start_server(database_url, "--max-boot-backlog", "1")
    boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
    async with contextlib.AsyncExitStack() as stack:
        stations = [
            await stack.enter_async_context(station16(server, f"CP-S{i}")) for i in range(60)
        ]
        answers = await asyncio.gather(*(cp.call(boot) for cp in stations))
        statuses = [answer.status for answer in answers]
        assert set(statuses) == {"Accepted", "Pending"}
        pending = [i for i, status in enumerate(statuses) if status == "Pending"]
        assert all(20 <= answers[i].interval <= 60 for i in pending)  # when to boot again
        turned_away = f"CP-S{pending[0]}"
        data = await eventually(
            lambda: graphql(server, STATION, id=turned_away),
            lambda d: d["station"] is not None,
        )
        assert data["station"]["registrationStatus"] == "Pending"
        # Once the storm is over, booting again is accepted.
        again = await stations[pending[0]].call(boot)
        assert again.status == "Accepted"


async def test_by_default_a_burst_of_boots_is_accepted(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url)
    boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
    async with contextlib.AsyncExitStack() as stack:
        stations = [
            await stack.enter_async_context(station16(server, f"CP-D{i}")) for i in range(60)
        ]
        answers = await asyncio.gather(*(cp.call(boot) for cp in stations))
    assert {answer.status for answer in answers} == {"Accepted"}
