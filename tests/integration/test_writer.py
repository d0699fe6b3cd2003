"""The command writer: under load, a batch waits a moment for more commands to commit at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from adapters.postgres import open_store
from adapters.writer import CommandWriter, Rate, gathering_pause
from domain.commands import ChangeConnectorStatus
from domain.ids import station_uuid


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
    writer = CommandWriter(app, gather_seconds=0.5, busy_rate=busy_rate)
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
    states = [app.mapper.to_domain_event(event) for event in stored[1:]]
    assert [event.status for event in states] == ["Available", "Occupied"]
    app.close()


def test_the_pause_is_what_is_left_of_the_gathering_time_only_when_busy() -> None:
    assert gathering_pause(queued=10.0, now=10.004, rate=500, gather=0.01, busy=200) == (
        pytest.approx(0.006)
    )
    assert gathering_pause(queued=10.0, now=10.02, rate=500, gather=0.01, busy=200) == 0.0
    assert gathering_pause(queued=10.0, now=10.004, rate=150, gather=0.01, busy=200) == 0.0


def test_the_rate_is_counted_over_whole_seconds() -> None:
    start = 1000.0
    rate = Rate(start)
    rate.count(300, start + 0.5)
    assert rate.per_second == 0.0  # not a whole second yet
    rate.count(100, start + 1.0)
    assert rate.per_second == pytest.approx(400.0)
    rate.count(50, start + 3.0)
    assert rate.per_second == pytest.approx(25.0)
