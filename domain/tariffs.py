"""Tariffs: what a charging session costs. A change takes effect from a moment on, never back.

The tariff in force when a session started prices it, so a session's price is known from the
facts at its start: later changes cannot reprice it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate


class TariffError(Exception):
    """A tariff that cannot be: a negative price, a retroactive change, an unknown currency."""


@dataclass(frozen=True)
class Prices:
    energy_per_kwh: Decimal = Decimal(0)
    charging_per_minute: Decimal = Decimal(0)
    idle_per_minute: Decimal = Decimal(0)  # parking after the EV stopped drawing energy
    session_fee: Decimal = Decimal(0)
    tax_rate: Decimal = Decimal(0)  # 0.19 for 19 %

    def check(self) -> None:
        for name, value in asdict(self).items():
            if value < 0:
                raise TariffError(f"{name} cannot be negative")
        if self.tax_rate >= 1:
            raise TariffError("tax_rate is a fraction: 0.19 for 19 %")

    def to_record(self) -> dict[str, Decimal]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Prices:
        return cls(**{name: Decimal(str(value)) for name, value in record.items()})


class Tariff(Aggregate):
    class Created(Aggregate.Created):
        name: str
        currency: str  # ISO 4217
        prices: dict[str, Decimal]
        station_ids: list[str] | None  # None: every station
        valid_from: datetime
        valid_to: datetime | None
        created_by: str

    class PricesChanged(Aggregate.Event):
        prices: dict[str, Decimal]
        effective_from: datetime
        by: str

        def apply(self, tariff: Tariff) -> None:
            tariff.prices = Prices.from_record(self.prices)

    class Ended(Aggregate.Event):
        valid_to: datetime
        by: str

        def apply(self, tariff: Tariff) -> None:
            tariff.valid_to = self.valid_to

    def __init__(
        self,
        name: str,
        currency: str,
        prices: dict[str, Decimal],
        station_ids: list[str] | None,
        valid_from: datetime,
        valid_to: datetime | None,
        created_by: str,
    ) -> None:
        self.name = name
        self.currency = currency
        self.prices = Prices.from_record(prices)
        self.station_ids = station_ids
        self.valid_from = valid_from
        self.valid_to = valid_to
        self.created_by = created_by

    @classmethod
    def create(
        cls,
        tariff_id: UUID,
        name: str,
        currency: str,
        prices: Prices,
        station_ids: list[str] | None,
        valid_from: datetime,
        valid_to: datetime | None,
        by: str,
        at: datetime,
    ) -> Tariff:
        if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
            raise TariffError(f"currency {currency!r} is not an ISO 4217 code such as EUR")
        prices.check()
        _not_before(valid_from, at, "valid_from")
        if valid_to is not None and valid_to <= valid_from:
            raise TariffError("valid_to must be after valid_from")
        return cls._create(
            cls.Created,
            id=tariff_id,
            timestamp=at,
            name=name,
            currency=currency,
            prices=prices.to_record(),
            station_ids=sorted(set(station_ids)) if station_ids is not None else None,
            valid_from=valid_from,
            valid_to=valid_to,
            created_by=by,
        )

    def change_prices(
        self, prices: Prices, effective_from: datetime, by: str, at: datetime
    ) -> None:
        prices.check()
        _not_before(effective_from, at, "effective_from")
        self.trigger_event(
            self.PricesChanged,
            prices=prices.to_record(),
            effective_from=effective_from,
            by=by,
            timestamp=at,
        )

    def end(self, valid_to: datetime, by: str, at: datetime) -> None:
        _not_before(valid_to, at, "valid_to")
        if valid_to <= self.valid_from:
            raise TariffError("valid_to must be after valid_from")
        self.trigger_event(self.Ended, valid_to=valid_to, by=by, timestamp=at)


# A little slack for clocks: "now" sent by an operator arrives a moment later.
_SLACK_SECONDS = 60


def _not_before(moment: datetime, now: datetime, name: str) -> None:
    if (now - moment).total_seconds() > _SLACK_SECONDS:
        raise TariffError(f"{name} is in the past: tariffs change from now on, never back")
