"""A projection rebuilt by several processes, each a share of the aggregates, against one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from adapters import projection_admin as admin
from adapters.parallel_rebuild import RebuildFailed
from adapters.postgres import Share, open_store
from adapters.projection_host import lock_key
from adapters.projection_runner import BatchRunner, shares_position
from domain.commands import RecordTransactionEvent, StartTransaction, StopTransaction
from domain.operator_commands import ChangeTariff, CreateTariff
from domain.tariffs import Prices
from domain.transaction import Transaction
from projections.billing import BillingProjection, BillingView
from projections.event_log import EventLogProjection, EventLogView
from projections.transactions import TransactionsProjection, TransactionsView
from tests.domain.test_transaction_events import event as tx_event
from tests.domain.test_transaction_events import register
from tests.integration.test_projection_runner import _views
from tests.support import ServerProcess, projection_tables

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
PARALLEL = (
    (TransactionsProjection, TransactionsView),
    (BillingProjection, BillingView),
    (EventLogProjection, EventLogView),
)


def _sessions(first: int, count: int) -> Iterator[Any]:
    """Commands of finished sessions, 1.6 and 2.x in turn, on stations of their own."""
    for number in range(first, first + count):
        station = f"CS-{number}"
        if number % 2:
            yield _start_16(station)
            yield _stop_16(station)
        else:
            yield from _events_2x(station)


def _start_16(station: str) -> StartTransaction:
    return StartTransaction(
        station_id=station, fingerprint="fp", evse_id=1, connector_id=1, id_token="TAG",
        meter_start_wh=1_000, started_at=T0, reservation_id=None, readings=[], received_at=T0,
    )  # fmt: skip


def _stop_16(station: str) -> Callable[[Any], StopTransaction]:
    """The stop of the transaction its start made."""

    def stop(started: Any) -> StopTransaction:
        return StopTransaction(
            station_id=station, transaction_key=started.transaction_key,
            stopped_at=T0 + timedelta(hours=1), meter_stop_wh=5_500, reason=None,
            id_token=None, readings=[], received_at=T0 + timedelta(hours=1),
        )  # fmt: skip

    return stop


def _events_2x(station: str) -> Iterator[RecordTransactionEvent]:
    begin = register(0, 1000, "Transaction.Begin")
    end = register(30, 9000, "Transaction.End")
    yield tx_event(0, "Started", station_id=station, evse_id=1, connector_id=1,
                   id_token="CARD", readings=[begin])  # fmt: skip
    yield tx_event(1, "Updated", station_id=station)
    yield tx_event(2, "Ended", station_id=station, stop_reason="EVDisconnected", readings=[end])


def _a_store_with_tariffs_between_sessions(database_url: str) -> None:
    """Sessions, a tariff, more sessions, new prices, more sessions. The tariff and the prices
    apply from before every session began (the stations' clocks), but each session is priced
    by what was stored before its end: a share that saw a later tariff would price it wrongly."""
    tariff_id = uuid4()
    created, changed = T0 - timedelta(days=30), T0 - timedelta(days=10)
    day = Prices(energy_per_kwh=Decimal("0.30"))
    dearer = Prices(energy_per_kwh=Decimal("0.45"))
    commands: list[Any] = [
        *_sessions(0, 8),
        CreateTariff(tariff_id, "Day", "EUR", day, None, created, None, "ops", created),
        *_sessions(8, 8),
        ChangeTariff(tariff_id, dearer, changed, None, "ops", changed),
        *_sessions(16, 8),
    ]
    _run(database_url, commands)


def _run(database_url: str, commands: list[Any]) -> None:
    """Runs the commands; a function is given the result of the command before it."""
    app = open_store(database_url)
    try:
        result: Any = None
        for command in commands:
            result = app.execute(command(result) if callable(command) else command)
    finally:
        app.close()


def _rebuild(database_url: str, env: dict[str, str], processes: int) -> None:
    for projection, view in PARALLEL:
        admin.rebuild(database_url, env, projection, view, lock_key(projection), _quiet, processes)


def _quiet(done: int, of: int, seconds: float) -> None:
    pass


def _tracking(database_url: str) -> set[tuple[str, str, int]]:
    with psycopg.connect(database_url) as conn:
        return {
            (projection.name, *row)
            for projection, _ in PARALLEL
            for row in conn.execute(
                f"SELECT application_name, notification_id FROM {projection.name}_tracking"
            )
        }


def test_a_parallel_rebuild_gives_what_one_process_gives(database_url: str) -> None:
    _a_store_with_tariffs_between_sessions(database_url)
    env = _views(database_url)
    _rebuild(database_url, env, processes=1)
    one = projection_tables(database_url)
    positions = _tracking(database_url)
    with psycopg.connect(database_url) as conn:
        priced = conn.execute(
            "SELECT tariff_version, count(*) FROM charging_sessions GROUP BY 1"
        ).fetchall()
    assert set(priced) == {(None, 8), (1, 8), (2, 8)}, "by no tariff, the first prices, the next"

    _rebuild(database_url, env, processes=3)

    assert projection_tables(database_url) == one
    assert _tracking(database_url) == positions  # the projection's own, and no share's


class _RefusingStops(TransactionsProjection):
    """The transactions view with a flaw: it cannot apply a 1.6 transaction's stop."""

    def process_event(self, event: Any, tracking: Tracking) -> None:
        if isinstance(event, Transaction.Stopped):
            raise ValueError(f"cannot apply the stop of {event.originator_id}")
        super().process_event(event, tracking)


def test_a_share_that_fails_fails_the_rebuild_with_its_cause(database_url: str) -> None:
    _run(database_url, list(_sessions(0, 6)))
    env = _views(database_url)

    with pytest.raises(RebuildFailed) as failed:
        admin.rebuild(database_url, env, _RefusingStops, TransactionsView,
                      lock_key(_RefusingStops), _quiet, processes=2)  # fmt: skip

    assert "failed: ValueError: cannot apply the stop of" in str(failed.value)
    assert "Traceback" in failed.value.detail
    with psycopg.connect(database_url) as conn:
        names = {
            row[0] for row in conn.execute("SELECT application_name FROM transactions_tracking")
        }
    assert "CSMS" not in names  # no position of its own: nothing says it is complete


def test_an_unfinished_parallel_rebuild_is_done_again_by_the_server(
    database_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    """A rebuild stopped after one share applied its events leaves the view partial, with no
    position of its own: the server that runs the projection next starts it again."""
    _run(database_url, list(_sessions(0, 6)))
    env = _views(database_url)
    admin.rebuild(database_url, env, BillingProjection, BillingView,
                  lock_key(BillingProjection), _quiet, processes=1)  # fmt: skip
    whole = projection_tables(database_url)["charging_sessions"]
    admin.reset(database_url, env, BillingProjection, BillingView)
    with BatchRunner(env, BillingProjection, BillingView, share=Share(0, 2)) as share:
        while share.step():
            pass
    partial = projection_tables(database_url)["charging_sessions"]
    assert 0 < len(partial) < len(whole), "the first share holds some of the sessions"

    start_server(database_url)

    deadline = time.monotonic() + 30
    while projection_tables(database_url)["charging_sessions"] != whole:
        if time.monotonic() > deadline:
            pytest.fail("the server did not rebuild the partial view")
        time.sleep(0.2)
    with psycopg.connect(database_url) as conn:
        names = {row[0] for row in conn.execute("SELECT application_name FROM billing_tracking")}
    assert names == {"CSMS"}


def _caught_up(database_url: str, projection: Any) -> bool:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return admin.standing(conn, projection, lock_key(projection)).behind == 0


def test_a_server_asked_for_processes_rebuilds_in_shares(
    database_url: str, start_server: Callable[..., ServerProcess]
) -> None:
    _a_store_with_tariffs_between_sessions(database_url)
    server = start_server(database_url)
    deadline = time.monotonic() + 30
    while not all(_caught_up(database_url, projection) for projection, _ in PARALLEL):
        assert time.monotonic() < deadline, "the server's views did not catch up"
        time.sleep(0.2)
    before = projection_tables(database_url)

    done = server.cli("projections", "rebuild", "billing", "--processes", "2")

    assert done.returncode == 0, done.stderr
    assert "rebuilt billing" in done.stderr and "[" + "#" * 30 + "]" in done.stderr
    with psycopg.connect(database_url) as conn:
        _, count = admin.events_of(conn, BillingProjection)
    said = f"projection billing: rebuilding {count} events in 2 processes"
    assert said in server.log_path.read_text()
    assert projection_tables(database_url) == before


def test_a_parallel_rebuild_shows_how_far_every_share_has_come() -> None:
    assert shares_position({"CSMS#0/2": 10, "CSMS#1/2": 7, "NotCSMS": 99}) == 7
    assert shares_position({"CSMS#0/2": 10}) == 0  # the other share has recorded nothing yet
    assert shares_position({}) == 0


def test_a_projection_the_command_rebuilds_is_listed_as_rebuilt_by_it(database_url: str) -> None:
    _run(database_url, list(_sessions(0, 2)))
    env = _views(database_url)
    key = lock_key(BillingProjection)
    seen: list[str | None] = []

    def held_by() -> str | None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return admin.standing(conn, BillingProjection, key).held_by

    def progress(done: int, of: int, seconds: float) -> None:
        seen.append(held_by())

    admin.rebuild(database_url, env, BillingProjection, BillingView, key, progress, processes=1)
    assert seen and set(seen) == {"command"}
    assert held_by() is None
