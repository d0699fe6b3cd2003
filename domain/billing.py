"""What a charging session delivered and what it costs: pure rules, no I/O.

Energy comes from the energy register samples (the start and stop registers among them), in
the order of their station times, whatever order they arrived in:

- each rise of the register is energy delivered;
- a fall to less than half of the highest value seen is a meter reset or rollover: counting
  starts again from zero, so the new value itself was delivered since;
- a smaller fall is a glitch (a rounded stop value, a late sample) and delivers nothing.

Charging time runs from the start to the last sample at which the register rose; the rest,
up to the stop, is idle (parking) time. Each cost line is rounded to the currency's minor unit
(half up), tax is computed on the sum of the rounded lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from domain.tariffs import Prices

# ISO 4217 currencies without a minor unit, or with three decimals; the rest have two.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3}
SECONDS_PER_MINUTE = Decimal(60)


@dataclass(frozen=True)
class Sample:
    at: datetime
    wh: Decimal


@dataclass(frozen=True)
class Delivery:
    energy_wh: Decimal
    charging_seconds: int
    idle_seconds: int


def deliver(samples: Iterable[Sample], started_at: datetime, stopped_at: datetime) -> Delivery:
    """The energy and the charging and idle time those samples show."""
    ordered = sorted(samples, key=lambda s: (s.at, s.wh))
    energy = Decimal(0)
    charging_until = started_at
    if ordered:
        high = ordered[0].wh
        for sample in ordered[1:]:
            if sample.wh > high:
                energy += sample.wh - high
            elif sample.wh * 2 < high:
                energy += sample.wh  # reset or rollover: counted again from zero
            else:
                continue  # a glitch: nothing delivered, nothing changes
            high = sample.wh
            if sample.wh > 0:
                charging_until = max(charging_until, min(sample.at, stopped_at))
    total = max(0, int((stopped_at - started_at).total_seconds()))
    charging = max(0, min(total, int((charging_until - started_at).total_seconds())))
    return Delivery(energy, charging, total - charging)


@dataclass(frozen=True)
class Cost:
    currency: str
    energy: Decimal
    charging_time: Decimal
    idle_time: Decimal
    session_fee: Decimal
    subtotal: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal


def price(delivery: Delivery, prices: Prices, currency: str) -> Cost:
    exponent = Decimal(1).scaleb(-_MINOR_UNITS.get(currency, 2))

    def money(amount: Decimal) -> Decimal:
        return amount.quantize(exponent, rounding=ROUND_HALF_UP)

    energy = money(delivery.energy_wh / 1000 * prices.energy_per_kwh)
    charging = money(delivery.charging_seconds / SECONDS_PER_MINUTE * prices.charging_per_minute)
    idle = money(delivery.idle_seconds / SECONDS_PER_MINUTE * prices.idle_per_minute)
    fee = money(prices.session_fee)
    subtotal = energy + charging + idle + fee
    tax = money(subtotal * prices.tax_rate)
    return Cost(
        currency, energy, charging, idle, fee, subtotal, prices.tax_rate, tax, subtotal + tax
    )
