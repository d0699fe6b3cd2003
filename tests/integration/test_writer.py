"""The command writer: under load, a batch waits a moment for more commands to commit at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from adapters.postgres import open_store
from adapters.writer import CommandWriter, Gathering, Traffic
from domain.commands import ChangeConnectorStatus
from domain.ids import station_uuid
from domain.station import ChargingStation


def _status(station_id: str, status: str) -> ChangeConnectorStatus:
    at = datetime.now(UTC)
    return ChangeConnectorStatus(station_id, 1, 1, status, None, None, None, None, at)


async def _two_commands_apart(writer: CommandWriter, seconds: float) -> None:
    first = asyncio.ensure_future(writer.submit(_status("CP-GATHER", "Available")))
    await asyncio.sleep(seconds)
    await asyncio.gather(first, writer.submit(_status("CP-GATHER", "Occupied")))


@pytest.mark.parametrize(("busy_rate", "batches"), [(0.0, 1), (float("inf"), 2)])
async def test_a_busy_writer_commits_commands_that_came_close_together_at_once(
    database_url: str, busy_rate: float, batches: int
) -> None:
    app = open_store(database_url)
    writer = CommandWriter(app, gathering=Gathering(0.5, busy_rate=busy_rate, busy_senders=0))
    writer.start()
    try:
        await _two_commands_apart(writer, 0.05)
    finally:
        await asyncio.to_thread(writer.stop)
    assert writer.batches == batches
    stored = app.recorder.select_events(station_uuid("CP-GATHER"))
    names = [event.topic.rpartition(".")[2] for event in stored]
    # Both commands' events are stored either way, in the order they came.
    assert names == ["Registered", "ConnectorStatusChanged", "ConnectorStatusChanged"]
    changes = [app.mapper.to_domain_event(event) for event in stored[1:]]
    statuses = [
        change.status
        for change in changes
        if isinstance(change, ChargingStation.ConnectorStatusChanged)
    ]
    assert statuses == ["Available", "Occupied"]
    app.close()


def _traffic(commands: int, senders: int) -> Traffic:
    """Traffic as counted over one second: `commands` from `senders` stations."""
    traffic = Traffic(start=0.0)
    traffic.count([f"CP-{i % senders}" for i in range(commands)], now=1.0)
    return traffic


def test_the_pause_is_what_is_left_of_the_gathering_time_only_when_busy() -> None:
    gathering = Gathering(0.01, busy_rate=200, busy_senders=50)
    busy = _traffic(500, 400)
    assert gathering.pause(queued=10.0, now=10.004, traffic=busy) == pytest.approx(0.006)
    assert gathering.pause(queued=10.0, now=10.02, traffic=busy) == 0.0  # waited enough
    assert gathering.pause(queued=10.0, now=10.004, traffic=_traffic(150, 150)) == 0.0
    # A few stations sending fast each wait for their own answer: nothing more would come.
    assert gathering.pause(queued=10.0, now=10.004, traffic=_traffic(500, 4)) == 0.0


def test_the_traffic_is_counted_over_whole_seconds() -> None:
    traffic = Traffic(start=1000.0)
    traffic.count(["CP-1", "CP-2", "CP-1"], 1000.5)
    assert (traffic.per_second, traffic.senders) == (0.0, 0)  # not a whole second yet
    traffic.count(["CP-3"], 1001.0)
    assert traffic.per_second == pytest.approx(4.0) and traffic.senders == 3
    traffic.count(["CP-1", None], 1003.0)
    assert traffic.per_second == pytest.approx(1.0) and traffic.senders == 2
