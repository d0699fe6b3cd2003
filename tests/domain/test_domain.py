"""The domain on the in-memory store: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.postgres import CACHE_SETTINGS
from domain import commands as cmd
from domain.ids import station_uuid, transaction_start_uuid, transaction_uuid
from domain.meter import MeterReading, SampledValue, last_energy_register_wh
from domain.service import CSMS
from domain.station import ChargingStation
from domain.transaction import Transaction

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@pytest.fixture
def app() -> CSMS:
    return CSMS()  # no PERSISTENCE_MODULE: the in-memory store


def reading(minutes: int, value: str, unit: str = "Wh", **extra: Any) -> dict[str, Any]:
    sample = SampledValue(value=value, unit=unit, **extra)
    return MeterReading(T0 + timedelta(minutes=minutes), (sample,)).to_record()


def start(fingerprint: str = "f1", meter: int = 1000) -> cmd.StartTransaction:
    return cmd.StartTransaction("CP", fingerprint, 1, 1, "TAG", meter, T0, None, [], T0)


def station_events(app: CSMS, station_id: str = "CP") -> list[str]:
    return [type(e).__name__ for e in app.events.get(station_uuid(station_id))]


def test_a_resent_start_is_the_same_transaction(app: CSMS) -> None:
    first = app.execute(start())
    again = app.execute(start())
    other = app.execute(start("f2"))
    assert first.created and not again.created
    assert again.transaction_key == first.transaction_key
    assert other.transaction_key != first.transaction_key


def test_a_stop_sent_twice_stops_once(app: CSMS) -> None:
    key = app.execute(start()).transaction_key
    stop = cmd.StopTransaction("CP", key, T0 + timedelta(hours=1), 6000, "Local", None, [], T0)
    assert app.execute(stop) and app.execute(stop)
    transaction: object = app.repository.get(transaction_uuid("CP", key))
    assert isinstance(transaction, Transaction)
    assert [type(e).__name__ for e in app.events.get(transaction.id)] == ["Started", "Stopped"]
    assert transaction.energy_wh == 5000


def test_a_stopped_transaction_leaves_memory_and_is_read_back_when_asked_for() -> None:
    app = CSMS(CACHE_SETTINGS)  # as the server keeps aggregates in memory
    cache = app.repository.cache
    assert cache is not None
    key = app.execute(start()).transaction_key
    transaction_id = transaction_uuid("CP", key)
    cached = cache.get(transaction_id)
    assert isinstance(cached, Transaction) and cached.is_active
    with pytest.raises(KeyError):  # only a resent start asks for what it recorded
        cache.get(transaction_start_uuid("CP", "f1"))
    assert app.execute(start()).transaction_key == key  # resent: the same transaction
    stop = cmd.StopTransaction("CP", key, T0 + timedelta(hours=1), 6000, "Local", None, [], T0)
    assert app.execute(stop)
    with pytest.raises(KeyError):
        cache.get(transaction_id)
    assert app.execute(stop)  # resent: read back, stopped once
    late = cmd.RecordMeterValues("CP", 1, 1, key, [reading(50, "5.5", "kWh")], T0)
    app.execute(late)
    kinds = [type(e).__name__ for e in app.events.get(transaction_id)]
    assert kinds == ["Started", "Stopped", "MeterValuesAdded"]


def test_resent_meter_values_add_nothing(app: CSMS) -> None:
    key = app.execute(start()).transaction_key
    values = cmd.RecordMeterValues("CP", 1, 1, key, [reading(5, "1.5", "kWh")], T0)
    assert app.execute(values) and app.execute(values)
    transaction: object = app.repository.get(transaction_uuid("CP", key))
    assert isinstance(transaction, Transaction)
    assert [type(e).__name__ for e in app.events.get(transaction.id)] == [
        "Started",
        "MeterValuesAdded",
    ]
    assert transaction.energy_wh == 500  # 1.5 kWh register minus the 1000 Wh start


def test_messages_for_an_unknown_transaction_are_recorded_on_the_station(app: CSMS) -> None:
    assert not app.execute(cmd.RecordMeterValues("CP", 1, 1, "77", [reading(1, "5")], T0))
    stop = cmd.StopTransaction("CP", "77", T0, 10, None, None, [], T0)
    assert not app.execute(stop)
    assert station_events(app)[-2:] == ["UnknownTransactionReported"] * 2


def test_a_replaced_connection_closing_does_not_take_the_station_offline(app: CSMS) -> None:
    app.execute(cmd.ConnectStation("CP", "c1", "ocpp1.6", "n", None, T0))
    app.execute(cmd.ConnectStation("CP", "c2", "ocpp1.6", "n", None, T0))
    app.execute(cmd.DisconnectStation("CP", "c1", "replaced", T0))
    station: object = app.repository.get(station_uuid("CP"))
    assert isinstance(station, ChargingStation)
    assert station.connected and station.connection_id == "c2"
    app.execute(cmd.DisconnectStation("CP", "c2", "closed", T0))
    assert not app.repository.get(station_uuid("CP")).connected


def test_the_same_status_report_again_is_not_a_new_fact(app: CSMS) -> None:
    status = cmd.ChangeConnectorStatus("CP", 1, 1, "Charging", None, None, None, T0, T0)
    app.execute(status)
    app.execute(status)
    app.execute(cmd.ChangeConnectorStatus("CP", 1, 1, "Finishing", None, None, None, T0, T0))
    assert station_events(app).count("ConnectorStatusChanged") == 2


def test_events_keep_both_timelines(app: CSMS) -> None:
    received = T0 + timedelta(minutes=3)
    app.execute(
        cmd.ChangeConnectorStatus("CP", 1, 1, "Faulted", "GroundFailure", None, "E7", T0, received)
    )
    changed = list(app.events.get(station_uuid("CP")))[-1]
    assert isinstance(changed, ChargingStation.ConnectorStatusChanged)
    assert changed.station_time == T0 and changed.timestamp == received


def test_a_failing_command_spoils_no_other_in_its_batch(app: CSMS) -> None:
    class Broken:
        station_id = "CP"

        def execute(self, uow: Any) -> None:
            uow.station("CP").trigger_event(
                ChargingStation.Disconnected, connection_id="x", reason="half-done", timestamp=T0
            )
            raise ValueError("boom")

    outcomes = app.execute_batch([start("a"), Broken(), start("b")])
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[0].created and outcomes[2].created
    assert "Disconnected" not in station_events(app)  # the failed command left no trace


def test_a_batch_commits_many_commands_at_once(app: CSMS) -> None:
    before = app.recorder.max_notification_id() or 0
    outcomes = app.execute_batch([start(f"f{i}") for i in range(50)])
    assert len({o.transaction_key for o in outcomes}) == 50
    # Each: transaction, start index, unknown token accepted; and the station once.
    assert (app.recorder.max_notification_id() or 0) - before == 50 * 3 + 1


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        ([reading(1, "100"), reading(2, "250")], Decimal(250)),
        ([reading(2, "250"), reading(1, "100")], Decimal(250)),  # out of order: latest time wins
        ([reading(1, "2.5", "kWh")], Decimal(2500)),
        ([reading(1, "7", phase="L1")], None),  # a phase register is not the total
        ([reading(1, "7", measurand="Power.Active.Import", unit="W")], None),
        ([reading(1, "garbage")], None),
        ([reading(1, "14.5", "kWh", multiplier=0)], Decimal(14500)),
        ([reading(1, "145", "Wh", multiplier=2)], Decimal(14500)),  # 145 x 10^2 Wh
        ([reading(1, "14500", "Wh", multiplier=-3)], Decimal("14.5")),
        ([], None),
    ],
)
def test_energy_register_in_wh(readings: list[dict[str, Any]], expected: Decimal | None) -> None:
    assert last_energy_register_wh(readings) == expected


def test_a_stale_cached_aggregate_is_reloaded_after_a_conflict() -> None:
    # Two applications on one store stand for two processes sharing a database.
    env = {"AGGREGATE_CACHE_MAXSIZE": "100", "AGGREGATE_CACHE_FASTFORWARD": "n"}
    one = CSMS(env)
    two = CSMS(env)
    two.recorder = one.recorder  # share the store, keep separate caches
    two.events = one.events
    two.repository.event_store = one.events
    key = one.execute(start()).transaction_key
    values = cmd.RecordMeterValues("CP", 1, 1, key, [reading(1, "1100")], T0)
    assert two.execute(values)  # two now caches the transaction
    stop = cmd.StopTransaction("CP", key, T0 + timedelta(hours=1), 2000, None, None, [], T0)
    assert one.execute(stop)  # one's cached copy is behind: conflict, reload, stop
    transaction_id = transaction_uuid("CP", key)
    names = [type(e).__name__ for e in one.events.get(transaction_id)]
    assert names == ["Started", "MeterValuesAdded", "Stopped"]
