"""Station-numbered transactions: the same events give the same transaction in any order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.postgres import CACHE_SETTINGS
from domain import commands as cmd
from domain.ids import transaction_uuid
from domain.meter import MeterReading, SampledValue
from domain.service import CSMS
from domain.transaction import Transaction
from domain.transaction_events import Fold, ReportedEvent

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def register(minutes: int, wh: int, context: str = "Sample.Periodic") -> dict[str, Any]:
    sample = SampledValue(value=str(wh), unit="Wh", context=context)
    return MeterReading(T0 + timedelta(minutes=minutes), (sample,)).to_record()


def event(seq_no: int, kind: str, **fields: Any) -> cmd.RecordTransactionEvent:
    defaults: dict[str, Any] = {
        "station_id": "CS",
        "transaction_key": "TX",
        "seq_no": seq_no,
        "kind": kind,
        "station_time": T0 + timedelta(minutes=seq_no),
        "trigger_reason": "MeterValuePeriodic",
        "offline": False,
        "evse_id": None,
        "connector_id": None,
        "id_token": None,
        "token_type": None,
        "charging_state": None,
        "stop_reason": None,
        "remote_start_id": None,
        "reservation_id": None,
        "readings": [register(seq_no, 1000 + 250 * seq_no)],
        "details": {},
        "received_at": T0 + timedelta(hours=1),
    }
    return cmd.RecordTransactionEvent(**{**defaults, **fields})


def session(updates: int, offline: bool = False) -> list[cmd.RecordTransactionEvent]:
    """Started, `updates` Updated events (some changing the charging state), then Ended."""
    started = event(
        0,
        "Started",
        trigger_reason="Authorized",
        evse_id=1,
        connector_id=1,
        id_token="CARD",
        token_type="ISO14443",
        charging_state="Charging",
        readings=[register(0, 1000, "Transaction.Begin")],
    )
    middle = [
        event(n, "Updated", offline=offline, charging_state=("SuspendedEV" if n % 2 else None))
        for n in range(1, updates + 1)
    ]
    last = updates + 1
    ended = event(
        last,
        "Ended",
        trigger_reason="StopAuthorized",
        charging_state="Idle",
        stop_reason="EVDisconnected",
        readings=[register(last, 1000 + 250 * last, "Transaction.End")],
    )
    return [started, *middle, ended]


def state(app: CSMS) -> dict[str, Any]:
    transaction: object = app.repository.get(transaction_uuid("CS", "TX"))
    assert isinstance(transaction, Transaction)
    return {
        name: getattr(transaction, name)
        for name in (
            "evse_id",
            "connector_id",
            "id_token",
            "token_type",
            "started_at",
            "stopped_at",
            "stop_reason",
            "charging_state",
            "meter_start_wh",
            "meter_stop_wh",
            "energy_wh",
            "missing_seq_nos",
            "reservation_id",
        )
    }


def deliver(events: list[cmd.RecordTransactionEvent], cached: bool = False) -> CSMS:
    # As the server keeps them: served from memory, changed in place, settled ones evicted.
    app = CSMS(CACHE_SETTINGS if cached else None)
    for command in events:
        app.execute(command)
    return app


def stored(app: CSMS) -> list[str]:
    return [type(e).__name__ for e in app.events.get(transaction_uuid("CS", "TX"))]


@given(st.data())
def test_any_order_with_any_repeats_gives_the_in_order_transaction(data: st.DataObject) -> None:
    events = session(data.draw(st.integers(0, 6), label="updates"), data.draw(st.booleans()))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=5), label="repeats")
    delivery = data.draw(st.permutations(events + repeats), label="delivery")
    # In memory as the server keeps it: an ended transaction leaves it, and a late event
    # reads it back.
    cached = data.draw(st.booleans(), label="cached")
    in_order, shuffled = deliver(events), deliver(delivery, cached)
    assert state(shuffled) == state(in_order)
    assert stored(shuffled).count("EventReported") == len(events)  # a repeat stores nothing
    assert "EventConflicted" not in stored(shuffled)


def test_a_session_in_order_reads_as_expected() -> None:
    final = state(deliver(session(updates=3)))
    assert final["evse_id"] == 1 and final["id_token"] == "CARD"
    assert final["started_at"] == T0 and final["stopped_at"] == T0 + timedelta(minutes=4)
    assert final["stop_reason"] == "EVDisconnected" and final["charging_state"] == "Idle"
    assert (final["meter_start_wh"], final["meter_stop_wh"]) == (Decimal(1000), Decimal(2000))
    assert final["energy_wh"] == 1000 and final["missing_seq_nos"] == []


def test_an_ended_transaction_stays_in_memory_only_while_an_event_is_missing() -> None:
    events = session(updates=3)
    app = deliver([e for e in events if e.seq_no != 2], cached=True)
    assert app.repository.cache is not None
    transaction_id = transaction_uuid("CS", "TX")
    cached = app.repository.cache.get(transaction_id)
    assert isinstance(cached, Transaction) and cached.missing_seq_nos == [2]
    app.execute(events[2])
    with pytest.raises(KeyError):  # settled: the store keeps it
        app.repository.cache.get(transaction_id)
    app.execute(events[2])  # resent: read back, recognised, nothing stored
    assert stored(app).count("EventReported") == len(events)


def test_a_gap_is_visible_until_the_missing_event_arrives() -> None:
    events = session(updates=3)
    app = deliver([e for e in events if e.seq_no != 2])
    assert state(app)["missing_seq_nos"] == [2]
    app.execute(events[2])
    assert state(app)["missing_seq_nos"] == []


def test_an_update_before_its_start_opens_the_transaction() -> None:
    events = session(updates=2)
    app = deliver([events[2]])
    early = state(app)
    assert early["started_at"] == T0 + timedelta(minutes=2) and early["stopped_at"] is None
    app.execute(events[0])
    assert state(app)["started_at"] == T0 and state(app)["evse_id"] == 1


def test_a_reused_sequence_number_is_kept_as_a_conflict_and_changes_nothing() -> None:
    events = session(updates=1)
    app = deliver(events)
    before = state(app)
    clash = event(1, "Updated", charging_state="SuspendedEVSE")
    assert app.execute(clash).folded is False
    assert state(app) == before
    assert stored(app)[-1] == "EventConflicted"


def test_gaps_are_counted_from_the_start_and_a_taken_number_is_refused() -> None:
    fold = Fold()
    for seq_no, kind in ((5, "Updated"), (3, "Started"), (1, "Updated"), (6, "Updated")):
        fold.add(ReportedEvent(seq_no, kind, T0 + timedelta(minutes=seq_no)))
    assert fold.summary().missing_seq_nos == [4]  # 2 is before the start: not missing
    assert fold.summary().started_at == T0 + timedelta(minutes=3)
    fold.add(ReportedEvent(4, "Updated", T0))
    assert fold.summary().missing_seq_nos == []
    with pytest.raises(ValueError, match="taken"):
        fold.add(ReportedEvent(4, "Updated", T0))


_CONTEXTS = st.sampled_from(
    ["Transaction.Begin", "Transaction.End", "Sample.Periodic", "Sample.Clock"]
)


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), _CONTEXTS), max_size=8))
def test_an_events_registers_are_its_earliest_and_latest_by_time_then_value(
    readings: list[tuple[int, int, str]],
) -> None:
    # Few times and values, so that ties are common.
    reported = ReportedEvent.of(
        {
            "seq_no": 1,
            "kind": "Updated",
            "station_time": T0,
            "readings": [register(minutes, wh, context) for minutes, wh, context in readings],
        }
    )

    timed = sorted((T0 + timedelta(minutes=m), Decimal(wh)) for m, wh, _ in readings)

    def first_in(context: str) -> Decimal | None:
        found = sorted((m, wh) for m, wh, c in readings if c == context)
        return Decimal(found[0][1]) if found else None

    assert reported.first_register == (timed[0] if timed else None)
    assert reported.last_register == (timed[-1] if timed else None)
    assert reported.begin_register == first_in("Transaction.Begin")
    assert reported.end_register == first_in("Transaction.End")
