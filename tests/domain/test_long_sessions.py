"""A long session costs a few bytes per message in memory, however long it runs."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from domain import commands as cmd
from domain.ids import transaction_uuid
from domain.int_set import IntSet
from domain.meter import MeterReading, SampledValue
from domain.service import CSMS
from domain.transaction import Transaction
from tests.domain.test_transaction_events import T0, event

MESSAGES = 1_000
CACHED = {"AGGREGATE_CACHE_MAXSIZE": "10", "DEEPCOPY_FROM_AGGREGATE_CACHE": "n"}


def meter_values(key: str, n: int, wh: int | None = None) -> cmd.RecordMeterValues:
    samples = (
        SampledValue(value=str(1000 + 10 * n if wh is None else wh), unit="Wh"),
        SampledValue(value="16.0", measurand="Current.Import", unit="A", phase="L1"),
    )
    reading = MeterReading(T0 + timedelta(seconds=10 * n), samples).to_record()
    return cmd.RecordMeterValues("CP", 1, 1, key, [reading], T0)


def csms_numbered_session(app: CSMS) -> Transaction:
    start = cmd.StartTransaction("CP", "f", 1, 1, None, 1000, T0, None, [], T0)
    key = app.execute(start).transaction_key
    for n in range(1, MESSAGES):
        app.execute(meter_values(key, n))
    return app.repository.get(transaction_uuid("CP", key))  # type: ignore[no-any-return]


def station_numbered_session(app: CSMS) -> Transaction:
    app.execute(event(0, "Started", evse_id=1, connector_id=1, charging_state="Charging"))
    for n in range(1, MESSAGES):
        app.execute(event(n, "Updated"))
    return app.repository.get(transaction_uuid("CS", "TX"))  # type: ignore[no-any-return]


def bytes_kept_by(load: Callable[[], Transaction]) -> int:
    """What the loaded aggregate holds on to once the loading's temporaries are gone."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        transaction = load()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert transaction.energy_wh is not None
    return kept


def test_a_transaction_keeps_digests_not_the_readings_or_events_it_folded() -> None:
    for session in (csms_numbered_session, station_numbered_session):
        app = CSMS(CACHED)
        transaction = session(app)
        app.repository.cache.get(transaction.id, evict=True)  # type: ignore[union-attr]
        kept = bytes_kept_by(lambda: app.repository.get(transaction.id))  # noqa: B023
        # Each message's readings alone take about 1 KB as records.
        assert kept < 40 * MESSAGES, f"{session.__name__}: {kept} bytes for {MESSAGES} messages"


def test_an_old_reading_resent_late_is_still_recognised() -> None:
    app = CSMS(CACHED)
    key = csms_numbered_session(app).transaction_key
    tid = transaction_uuid("CP", key)
    stored = len(list(app.events.get(tid)))
    app.execute(meter_values(key, 3))  # long after it first came
    assert len(list(app.events.get(tid))) == stored
    app.execute(meter_values(key, 3, wh=5))  # the same time, another value: a new reading
    assert len(list(app.events.get(tid))) == stored + 1


@given(st.lists(st.integers(-(2**70), 2**70) | st.integers(0, 50)))
def test_an_int_set_holds_what_a_set_holds(items: list[int]) -> None:
    compact, plain = IntSet(), set()
    for item in items:
        compact.add(item)
        plain.add(item)
    assert len(compact) == len(plain)
    assert all(item in compact for item in plain)
    assert not any(item + 1 in compact for item in plain if item + 1 not in plain)
