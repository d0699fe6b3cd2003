"""A batch of commands reads the aggregates its cache misses in one go, and decides as before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.postgres import open_store
from domain.commands import ConnectStation, StartResult, StartTransaction
from domain.service import CSMS

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def start(station_id: str) -> StartTransaction:
    return StartTransaction(station_id, "fp", 1, 1, "TAG", 0, T0, None, [], T0)


def connect(station_id: str) -> ConnectStation:
    return ConnectStation(station_id, "c1", "ocpp1.6", "node", None, T0)


class Counted:
    """Counts the calls to a method of an object, which still does its work."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls = 0
        method: Callable[..., Any] = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        setattr(owner, name, counted)


def reads(app: CSMS) -> tuple[Counted, Counted]:
    """Reads of several aggregates at once, and of one aggregate's events."""
    return Counted(app, "_read_many"), Counted(app.recorder, "select_events")


def test_a_batch_reads_the_aggregates_it_misses_in_one_go(database_url: str) -> None:
    app = open_store(database_url)
    try:
        together, one_by_one = reads(app)
        stations = [f"CS-{n}" for n in range(50)]
        outcomes = app.execute_batch([connect(s) for s in stations] + [start(s) for s in stations])
        assert not [o for o in outcomes if isinstance(o, BaseException)]
        assert (together.calls, one_by_one.calls) == (1, 0)
        app.execute_batch([connect(s) for s in stations])  # all cached now: nothing to read
        assert (together.calls, one_by_one.calls) == (1, 0)
    finally:
        app.close()


def test_what_is_read_ahead_decides_as_what_is_read_alone(database_url: str) -> None:
    """A resent start after a restart (a cold cache) is recognised, read ahead or not."""
    first = open_store(database_url)
    try:
        started = first.execute(start("CS-RESENT"))
    finally:
        first.close()
    restarted = open_store(database_url)
    try:
        together, _ = reads(restarted)
        again = restarted.execute_batch([connect("CS-OTHER"), start("CS-RESENT")])[1]
        assert together.calls == 1
    finally:
        restarted.close()
    assert isinstance(started, StartResult) and isinstance(again, StartResult)
    assert (again.transaction_key, again.created) == (started.transaction_key, False)
