"""A unit of work: the aggregates a batch of commands loaded or created, saved together."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate

from domain.ids import station_uuid
from domain.station import ChargingStation

A = TypeVar("A", bound=Aggregate)
# Reads several aggregates at once: those found, by id; an id left out has no events.
LoadMany = Callable[[Sequence[UUID]], Mapping[UUID, Aggregate]]


class UnitOfWork:
    def __init__(
        self,
        repository: Repository[UUID],
        allocate_number: Callable[[], int],
        accept_unknown_tokens: bool = True,
        load_many: LoadMany | None = None,
    ) -> None:
        self._repository = repository
        self._allocate_number = allocate_number
        self.accept_unknown_tokens = accept_unknown_tokens
        self._load_many = load_many
        self._aggregates: dict[UUID, Aggregate | None] = {}

    def preload(self, aggregate_ids: Iterable[UUID]) -> None:
        """Reads in one go those of the aggregates that are neither held nor cached.

        Commands ask for their aggregates one at a time; each that the cache misses (a station
        never seen, a transaction just begun) would cost a read of its own, one after the other.
        An aggregate read ahead and never asked for costs nothing more.
        """
        if self._load_many is None:
            return
        missing = [
            aggregate_id
            for aggregate_id in dict.fromkeys(aggregate_ids)
            if aggregate_id not in self._aggregates and not self._cached(aggregate_id)
        ]
        if not missing:
            return
        found = self._load_many(missing)
        cache = self._repository.cache
        for aggregate_id in missing:
            aggregate = self._aggregates[aggregate_id] = found.get(aggregate_id)
            if aggregate is not None and cache is not None:
                cache.put(aggregate_id, aggregate)

    def _cached(self, aggregate_id: UUID) -> bool:
        cache = self._repository.cache
        if cache is None:
            return False
        try:
            cache.get(aggregate_id)
        except KeyError:
            return False
        return True

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
