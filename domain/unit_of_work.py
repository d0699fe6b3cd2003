"""A unit of work: the aggregates a batch of commands loaded or created, saved together."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from domain.ids import station_uuid
from domain.station import ChargingStation

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    def __init__(
        self,
        repository: Repository[UUID],
        allocate_number: Callable[[], int],
        accept_unknown_tokens: bool = True,
    ) -> None:
        self._repository = repository
        self._allocate_number = allocate_number
        self.accept_unknown_tokens = accept_unknown_tokens
        self._aggregates: dict[UUID, Aggregate | None] = {}

    def get(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate with this id, or None; loaded once per unit of work."""
        if aggregate_id not in self._aggregates:
            try:
                self._aggregates[aggregate_id] = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._aggregates[aggregate_id] = None
        found = self._aggregates[aggregate_id]
        if found is not None and not isinstance(found, cls):
            raise TypeError(f"aggregate {aggregate_id} is a {type(found).__name__}, not {cls}")
        return found

    def add(self, aggregate: Aggregate) -> None:
        self._aggregates[aggregate.id] = aggregate

    def station(self, station_id: str) -> ChargingStation:
        """The station, registered on first sight."""
        station = self.get(ChargingStation, station_uuid(station_id))
        if station is None:
            station = ChargingStation(station_id)
            self.add(station)
        return station

    def allocate_number(self) -> int:
        """A transaction number unique across every process sharing the store."""
        return self._allocate_number()

    def touched(self) -> list[UUID]:
        return list(self._aggregates)

    def changed(self) -> list[Aggregate]:
        return [a for a in self._aggregates.values() if a is not None and a.pending_events]
