"""Folding a station-numbered transaction's events into its state, whatever their order.

Every value is chosen by sequence number or by meter timestamp, never by arrival, so the same set
of events gives the same transaction however it was delivered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from domain.int_set import IntSet
from domain.meter import energy_registers

STARTED, ENDED = "Started", "Ended"
BEGIN_CONTEXT, END_CONTEXT = "Transaction.Begin", "Transaction.End"
DEFAULT_STOP_REASON = "Local"  # what a station means when it ends without saying why

Register = tuple[datetime, Decimal]


class ReportedEvent(NamedTuple):
    """What one event says about its transaction, with its meter registers reduced.

    A named tuple, not a frozen dataclass: made for every 2.x event by the aggregate and by two
    views, and a frozen dataclass of this size took 3.8 us to make, a named tuple 1.0.
    """

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
        first = last = begin = end = None
        for at, context, wh in energy_registers(fields.get("readings", ())):
            timed = (at, wh)
            if first is None or timed < first:
                first = timed
            if last is None or timed > last:
                last = timed
            # A context's register is its earliest one.
            if context == BEGIN_CONTEXT and (begin is None or timed < begin):
                begin = timed
            elif context == END_CONTEXT and (end is None or timed < end):
                end = timed
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
            first_register=first,
            last_register=last,
            begin_register=None if begin is None else begin[1],
            end_register=None if end is None else end[1],
        )


class Summary(NamedTuple):
    """What a transaction's events add up to (a named tuple: one is made per event)."""

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
    missing_seq_nos: list[int]

    @property
    def energy_wh(self) -> Decimal | None:
        end = self.meter_stop_wh if self.meter_stop_wh is not None else self.last_register_wh
        if end is None or self.meter_start_wh is None:
            return None
        return end - self.meter_start_wh


# Values taken from the lowest-numbered event that has one, and from the highest.
_FROM_FIRST = (
    "evse_id",
    "connector_id",
    "id_token",
    "token_type",
    "reservation_id",
    "begin_register",
)
_FROM_LAST = ("charging_state", "end_register")


class Fold:
    """The summary of a transaction's events, kept up to date one event at a time.

    Each value is the minimum or maximum of something, by sequence number or meter time, so
    adding an event costs the same however many came before, in whatever order: a session
    reporting every ten seconds for hours must not cost more per event as it goes on.
    """

    def __init__(self) -> None:
        self.seq_nos = IntSet()  # only the numbers: the events themselves are folded
        self._started: ReportedEvent | None = None  # the lowest-numbered Started
        self._ended: ReportedEvent | None = None  # the highest-numbered Ended
        self._first: dict[str, tuple[int, Any]] = {}  # name: (seq_no, value)
        self._last: dict[str, tuple[int, Any]] = {}
        self._earliest: datetime | None = None
        self._first_register: Register | None = None
        self._last_register: tuple[datetime, Decimal, int] | None = None
        self._offline = False
        self.lowest_seq_no = self.highest_seq_no = 0  # meaningful once there is an event

    def add(self, event: ReportedEvent) -> None:
        """Adds an event whose sequence number is not taken yet."""
        seq_no = event.seq_no
        if seq_no in self.seq_nos:
            raise ValueError(f"sequence number {seq_no} is taken")
        self.seq_nos.add(seq_no)
        if len(self.seq_nos) == 1:
            self.lowest_seq_no = self.highest_seq_no = seq_no
        else:
            self.lowest_seq_no = min(self.lowest_seq_no, seq_no)
            self.highest_seq_no = max(self.highest_seq_no, seq_no)
        if event.kind == STARTED and (self._started is None or seq_no < self._started.seq_no):
            self._started = event
        if event.kind == ENDED and (self._ended is None or seq_no > self._ended.seq_no):
            self._ended = event
        for name in _FROM_FIRST:
            value = getattr(event, name)
            if value is not None and (name not in self._first or seq_no < self._first[name][0]):
                self._first[name] = (seq_no, value)
        for name in _FROM_LAST:
            value = getattr(event, name)
            if value is not None and (name not in self._last or seq_no > self._last[name][0]):
                self._last[name] = (seq_no, value)
        if self._earliest is None or event.station_time < self._earliest:
            self._earliest = event.station_time
        if event.first_register and (
            self._first_register is None or event.first_register < self._first_register
        ):
            self._first_register = event.first_register
        if event.last_register:
            last = (*event.last_register, seq_no)
            if self._last_register is None or last > self._last_register:
                self._last_register = last
        self._offline = self._offline or event.offline

    def summary(self) -> Summary:
        if not self.seq_nos:
            raise ValueError("a transaction needs at least one event")
        started, ended = self._started, self._ended
        begin = self._value(self._first, "begin_register")
        earliest_register = self._first_register[1] if self._first_register else None
        return Summary(
            started_at=started.station_time if started else self._earliest,
            stopped_at=ended.station_time if ended else None,
            evse_id=self._value(self._first, "evse_id"),
            connector_id=self._value(self._first, "connector_id"),
            id_token=self._value(self._first, "id_token"),
            token_type=self._value(self._first, "token_type"),
            stop_reason=(ended.stop_reason or DEFAULT_STOP_REASON) if ended else None,
            charging_state=self._value(self._last, "charging_state"),
            reservation_id=self._value(self._first, "reservation_id"),
            meter_start_wh=begin if begin is not None else earliest_register,
            meter_stop_wh=self._value(self._last, "end_register"),
            last_register_wh=self._last_register[1] if self._last_register else None,
            offline=self._offline,
            missing_seq_nos=self._missing(),
        )

    @staticmethod
    def _value(chosen: dict[str, tuple[int, Any]], name: str) -> Any:
        return chosen[name][1] if name in chosen else None

    def _missing(self) -> list[int]:
        lowest, highest = self.lowest_seq_no, self.highest_seq_no
        low = self._started.seq_no if self._started else lowest
        if low == lowest and len(self.seq_nos) == highest - lowest + 1:
            return []  # no gap: the usual case, known without looking
        return [n for n in range(low, highest + 1) if n not in self.seq_nos]
