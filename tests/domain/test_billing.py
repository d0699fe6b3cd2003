"""The billing rules: energy from real meters' samples, time split, prices and rounding."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.billing import Delivery, Sample, deliver, price
from domain.meter import energy_register_wh
from domain.tariffs import Prices, Tariff, TariffError

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def samples(*points: tuple[float, str]) -> list[Sample]:
    return [Sample(at(minute), Decimal(wh)) for minute, wh in points]


def test_energy_is_what_the_register_rose_by_and_charging_ends_at_the_last_rise() -> None:
    delivered = deliver(
        samples((0, "1000"), (30, "6000"), (60, "11000"), (90, "11000")), T0, at(120)
    )
    assert delivered == Delivery(Decimal(10000), charging_seconds=3600, idle_seconds=3600)


def test_kwh_and_multipliers_are_wh_before_the_rules_apply() -> None:
    assert energy_register_wh({"value": "12.5", "unit": "kWh"}) == Decimal("12500.0")
    assert energy_register_wh({"value": "125", "unit": "Wh", "multiplier": 2}) == Decimal(12500)
    assert energy_register_wh({"value": "3", "measurand": "Power.Active.Import"}) is None


def test_missing_start_or_stop_registers_use_the_first_and_last_samples() -> None:
    only_middle = samples((10, "2000"), (50, "9000"))
    assert deliver(only_middle, T0, at(60)).energy_wh == Decimal(7000)


def test_a_meter_reset_counts_again_from_zero() -> None:
    reset = samples((0, "50000"), (20, "53000"), (30, "400"), (60, "2400"))
    assert deliver(reset, T0, at(60)).energy_wh == Decimal(3000 + 400 + 2000)


def test_a_rollover_counts_again_from_zero() -> None:
    rolled = samples((0, "99998000"), (30, "99999500"), (45, "700"))
    assert deliver(rolled, T0, at(60)).energy_wh == Decimal(1500 + 700)


def test_a_small_fall_is_a_glitch_that_delivers_nothing() -> None:
    # A stop register rounded below the last sample does not count as a reset.
    glitch = samples((0, "1000"), (50, "5000.4"), (60, "5000"))
    delivered = deliver(glitch, T0, at(60))
    assert delivered.energy_wh == Decimal("4000.4")
    assert delivered.charging_seconds == 50 * 60


def test_no_samples_delivers_nothing_and_all_time_is_idle() -> None:
    assert deliver([], T0, at(10)) == Delivery(Decimal(0), 0, 600)


@given(st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=30), st.randoms())
def test_any_arrival_order_gives_the_same_delivery(
    steps: list[int], shuffle: random.Random
) -> None:
    register, points = Decimal(1000), []
    for minute, step in enumerate(steps):
        register += step
        points.append(Sample(at(minute), register))
    in_order = deliver(points, T0, at(len(steps) + 5))
    shuffle.shuffle(points)
    assert deliver(points, T0, at(len(steps) + 5)) == in_order
    assert in_order.energy_wh == sum(steps[1:])


def test_prices_are_rounded_per_line_half_up_and_taxed_on_the_sum() -> None:
    delivery = Delivery(Decimal("12345"), charging_seconds=3600 + 30, idle_seconds=10 * 60)
    prices = Prices(
        energy_per_kwh=Decimal("0.39"),
        charging_per_minute=Decimal("0.015"),
        idle_per_minute=Decimal("0.10"),
        session_fee=Decimal("0.50"),
        tax_rate=Decimal("0.19"),
    )
    cost = price(delivery, prices, "EUR")
    assert cost.energy == Decimal("4.81")  # 12.345 kWh x 0.39 = 4.81455
    assert cost.charging_time == Decimal("0.91")  # 60.5 min x 0.015 = 0.9075
    assert cost.idle_time == Decimal("1.00")
    assert cost.subtotal == Decimal("7.22")
    assert cost.tax == Decimal("1.37")  # 1.3718
    assert cost.total == Decimal("8.59")
    assert price(delivery, prices, "JPY").energy == Decimal("5")


def test_tariffs_refuse_what_cannot_be() -> None:
    now = datetime.now(UTC)
    good = Prices(energy_per_kwh=Decimal("0.30"))
    with pytest.raises(TariffError, match="ISO 4217"):
        Tariff.create(_id(), "x", "euro", good, None, now, None, "op", now)
    with pytest.raises(TariffError, match="negative"):
        Tariff.create(_id(), "x", "EUR", Prices(session_fee=Decimal(-1)), None, now, None, "o", now)
    with pytest.raises(TariffError, match="in the past"):
        Tariff.create(_id(), "x", "EUR", good, None, now - timedelta(days=1), None, "op", now)
    tariff = Tariff.create(_id(), "x", "EUR", good, ["CP-1"], now, None, "op", now)
    with pytest.raises(TariffError, match="in the past"):
        tariff.change_prices(good, now - timedelta(hours=1), "op", now)


def _id() -> uuid.UUID:
    return uuid.uuid4()
