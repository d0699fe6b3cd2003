"""Meter readings as the station sent them, and the energy they imply.

Readings are kept as plain records (dicts) inside events so that stored history never depends on
these classes; the raw value text, unit and any signed data are kept verbatim.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

ENERGY_IMPORT_REGISTER = "Energy.Active.Import.Register"
_WH_PER_UNIT = {"wh": Decimal(1), "kwh": Decimal(1000)}


@dataclass(frozen=True)
class SampledValue:
    value: str
    measurand: str = ENERGY_IMPORT_REGISTER
    unit: str | None = None
    phase: str | None = None
    location: str | None = None
    context: str | None = None
    multiplier: int | None = None  # the value is `value` x 10^multiplier `unit`
    signed_data: str | None = None
    signing_method: str | None = None
    encoding_method: str | None = None
    public_key: str | None = None

    def to_record(self) -> dict[str, Any]:
        # Shallow: every field is a plain value (asdict's deep copy cost more than the rest).
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


@dataclass(frozen=True)
class MeterReading:
    timestamp: datetime
    values: tuple[SampledValue, ...]

    def to_record(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "values": [v.to_record() for v in self.values]}


def energy_register_wh(record: Mapping[str, Any]) -> Decimal | None:
    """The total imported energy in Wh of one sampled-value record, if it is that register."""
    if record.get("measurand", ENERGY_IMPORT_REGISTER) != ENERGY_IMPORT_REGISTER:
        return None
    if record.get("phase"):
        return None  # a per-phase register is not the total
    factor = _WH_PER_UNIT.get(str(record.get("unit") or "Wh").lower())
    if factor is None:
        return None
    try:
        return Decimal(str(record["value"])).scaleb(int(record.get("multiplier") or 0)) * factor
    except (InvalidOperation, KeyError, ValueError):
        return None


def energy_registers(readings: Iterable[Mapping[str, Any]]) -> list[tuple[datetime, str, Decimal]]:
    """Every total energy register in the readings: its time, its context and its Wh."""
    found = []
    for reading in readings:
        for record in reading.get("values", ()):
            wh = energy_register_wh(record)
            if wh is not None:
                found.append((reading["timestamp"], record.get("context", ""), wh))
    return found


def last_energy_register_wh(readings: Iterable[Mapping[str, Any]]) -> Decimal | None:
    """The energy register of the latest reading (by its timestamp) that carries one."""
    latest: tuple[datetime, Decimal] | None = None
    for at, _, wh in energy_registers(readings):
        if latest is None or at >= latest[0]:
            latest = (at, wh)
    return latest[1] if latest else None
