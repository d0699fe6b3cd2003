"""Folding a station-numbered transaction's events into its state, whatever their order.

Every value is chosen by sequence number or by meter timestamp, never by arrival, so the same set
of events gives the same transaction however it was delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain.meter import energy_registers

STARTED, ENDED = "Started", "Ended"
BEGIN_CONTEXT, END_CONTEXT = "Transaction.Begin", "Transaction.End"
DEFAULT_STOP_REASON = "Local"  # what a station means when it ends without saying why

Register = tuple[datetime, Decimal]


@dataclass(frozen=True)
class ReportedEvent:
    """What one event says about its transaction, with its meter registers reduced."""

    seq_no: int
    kind: str
    station_time: datetime
    offline: bool = False
    evse_id: int | None = None
    connector_id: int | None = None
    id_token: str | None = None
    token_type: str | None = None
    charging_state: str | None = None
    stop_reason: str | None = None
    reservation_id: int | None = None
    first_register: Register | None = None  # the earliest energy register it carries
    last_register: Register | None = None  # the latest one
    begin_register: Decimal | None = None  # the register read as the transaction began
    end_register: Decimal | None = None  # the register read as it ended

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> ReportedEvent:
        """From an event's fields, its `readings` included."""
        registers = energy_registers(fields.get("readings", ()))
        timed = sorted((at, wh) for at, _, wh in registers)
        return cls(
            seq_no=fields["seq_no"],
            kind=fields["kind"],
            station_time=fields["station_time"],
            offline=bool(fields.get("offline")),
            evse_id=fields.get("evse_id"),
            connector_id=fields.get("connector_id"),
            id_token=fields.get("id_token"),
            token_type=fields.get("token_type"),
            charging_state=fields.get("charging_state"),
            stop_reason=fields.get("stop_reason"),
            reservation_id=fields.get("reservation_id"),
            first_register=timed[0] if timed else None,
            last_register=timed[-1] if timed else None,
            begin_register=_in_context(registers, BEGIN_CONTEXT),
            end_register=_in_context(registers, END_CONTEXT),
        )

    def to_record(self) -> dict[str, Any]:
        """As plain JSON values, for a read model to keep."""
        record = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: plain values
        record["station_time"] = self.station_time.isoformat()
        for name in ("first_register", "last_register"):
            register = getattr(self, name)
            record[name] = [register[0].isoformat(), str(register[1])] if register else None
        for name in ("begin_register", "end_register"):
            record[name] = None if record[name] is None else str(record[name])
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ReportedEvent:
        def register(value: list[str] | None) -> Register | None:
            return (datetime.fromisoformat(value[0]), Decimal(value[1])) if value else None

        def number(value: str | None) -> Decimal | None:
            return None if value is None else Decimal(value)

        return cls(
            **{
                **record,
                "station_time": datetime.fromisoformat(record["station_time"]),
                "first_register": register(record["first_register"]),
                "last_register": register(record["last_register"]),
                "begin_register": number(record["begin_register"]),
                "end_register": number(record["end_register"]),
            }
        )


def _in_context(registers: list[tuple[datetime, str, Decimal]], context: str) -> Decimal | None:
    matching = sorted((at, wh) for at, ctx, wh in registers if ctx == context)
    return matching[0][1] if matching else None


@dataclass(frozen=True)
class Summary:
    started_at: datetime | None
    stopped_at: datetime | None
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    stop_reason: str | None
    charging_state: str | None
    reservation_id: int | None
    meter_start_wh: Decimal | None
    meter_stop_wh: Decimal | None
    last_register_wh: Decimal | None
    offline: bool
    missing_seq_nos: list[int] = field(default_factory=list)

    @property
    def energy_wh(self) -> Decimal | None:
        end = self.meter_stop_wh if self.meter_stop_wh is not None else self.last_register_wh
        if end is None or self.meter_start_wh is None:
            return None
        return end - self.meter_start_wh


def _first(values: Iterable[Any]) -> Any:
    return next((v for v in values if v is not None), None)


def summarize(events: Iterable[ReportedEvent]) -> Summary:
    """The transaction those events describe (at most one event per sequence number)."""
    ordered = sorted(events, key=lambda e: e.seq_no)
    if not ordered:
        raise ValueError("a transaction needs at least one event")
    started = _first(e for e in ordered if e.kind == STARTED)
    ended = _first(e for e in reversed(ordered) if e.kind == ENDED)
    firsts = [e.first_register for e in ordered if e.first_register]
    lasts = [(*e.last_register, e.seq_no) for e in ordered if e.last_register]
    begin = _first(e.begin_register for e in ordered)
    seen = {e.seq_no for e in ordered}
    low = started.seq_no if started else ordered[0].seq_no
    return Summary(
        started_at=started.station_time if started else min(e.station_time for e in ordered),
        stopped_at=ended.station_time if ended else None,
        evse_id=_first(e.evse_id for e in ordered),
        connector_id=_first(e.connector_id for e in ordered),
        id_token=_first(e.id_token for e in ordered),
        token_type=_first(e.token_type for e in ordered),
        stop_reason=(ended.stop_reason or DEFAULT_STOP_REASON) if ended else None,
        charging_state=_first(e.charging_state for e in reversed(ordered)),
        reservation_id=_first(e.reservation_id for e in ordered),
        meter_start_wh=begin if begin is not None else (min(firsts)[1] if firsts else None),
        meter_stop_wh=_first(e.end_register for e in reversed(ordered)),
        last_register_wh=max(lasts)[1] if lasts else None,
        offline=any(e.offline for e in ordered),
        missing_seq_nos=[n for n in range(low, ordered[-1].seq_no + 1) if n not in seen],
    )
