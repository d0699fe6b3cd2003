"""The application service: runs batches of commands and stores their events in one commit."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, StoredEvent

from domain.commands import Command, likely
from domain.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Reads the stored events of several aggregates in one go, each aggregate's in order.
ReadMany = Callable[[Sequence[UUID]], Iterable[StoredEvent]]


class CSMS(Application[UUID]):
    """The event-sourced core. Its events live in the `csms_events` table."""

    name = "CSMS"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        allocate_number: Callable[[], int] | None = None,
        accept_unknown_tokens: bool = True,
        read_many: ReadMany | None = None,
    ) -> None:
        super().__init__(env)
        self._allocate_number = allocate_number or itertools.count(1).__next__
        self.accept_unknown_tokens = accept_unknown_tokens
        self._read_many = read_many

    def unit_of_work(self) -> UnitOfWork:
        load_many = self._load_many if self._read_many else None
        return UnitOfWork(
            self.repository, self._allocate_number, self.accept_unknown_tokens, load_many
        )

    def _load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
        """The aggregates found among these, each replayed from its stored events."""
        assert self._read_many is not None
        events: dict[UUID | str, list[Any]] = {}
        for stored in self._read_many(aggregate_ids):
            events.setdefault(stored.originator_id, []).append(self.mapper.to_domain_event(stored))
        found: dict[UUID, Aggregate] = {}
        for history in events.values():
            aggregate: Aggregate | None = project_aggregate(None, history)
            if aggregate is not None:
                found[aggregate.id] = aggregate
        return found

    def read_as_of(self, aggregate_id: UUID, moment: datetime) -> Any:
        """The aggregate replayed up to its last event recorded at or before the moment."""
        version = None
        for stored in self.repository.event_store.get(aggregate_id):
            if stored.timestamp > moment:  # type: ignore[attr-defined]
                break
            version = stored.originator_version
        if version is None:
            return None  # not known yet
        return self.repository.get(aggregate_id, version=version)

    def read_fresh(self, aggregate_id: UUID) -> Any:
        """The aggregate as stored now, whatever this process cached (another may have written).

        It is a copy of its own, never the cached object the writer goes on changing.
        """
        self._forget([aggregate_id])
        latest = list(self.repository.event_store.get(aggregate_id, desc=True, limit=1))
        if not latest:
            raise AggregateNotFoundError(aggregate_id)
        return self.repository.get(aggregate_id, version=latest[0].originator_version)

    def execute(self, command: Command[Any]) -> Any:
        """Runs one command and commits its events; raises what the command raised."""
        outcome = self.execute_batch([command])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def execute_batch(self, commands: Sequence[Command[Any]]) -> list[Any]:
        """Runs commands in order against one unit of work and commits all their events at once.

        Returns one outcome per command: its result, or the exception it raised. If the batch
        cannot be committed (another process wrote one of its aggregates, or one command failed),
        each command is run and committed on its own, so one bad command spoils no other.
        """
        uow = self.unit_of_work()
        try:
            uow.preload(aggregate_id for command in commands for aggregate_id in likely(command))
            results = [command.execute(uow) for command in commands]
            self._store(uow.changed())
        except Exception as error:
            # Commands change cached aggregates in place: what they changed is not stored.
            self._forget(uow.touched())
            if len(commands) > 1 or isinstance(error, IntegrityError):
                log.info(
                    "batch of %d not committed (%r); committing one by one", len(commands), error
                )
                return [self._execute_alone(command) for command in commands]
            return [error]
        return results

    def _store(self, aggregates: Sequence[Aggregate]) -> None:
        """Stores the aggregates' new events and caches the aggregates, as `save` does.

        `save` checks each object against runtime protocols to tell aggregates from events:
        a quarter of the writer's CPU. These are aggregates, so their events are taken directly.
        An aggregate that says it is `settled` (an ended transaction) is not kept in memory:
        the cache would otherwise fill with every session of the last hours.
        """
        events = [event for aggregate in aggregates for event in aggregate.collect_events()]
        self.events.put(events)
        cache = self.repository.cache
        if cache is not None and not self.repository.fastforward:
            for aggregate in aggregates:
                if getattr(aggregate, "settled", False):
                    # Nothing more is expected of it: the store keeps it, memory need not (a
                    # late message reads it back).
                    with contextlib.suppress(KeyError):
                        cache.get(aggregate.id, evict=True)
                else:
                    cache.put(aggregate.id, aggregate)

    def _forget(self, aggregate_ids: Sequence[UUID]) -> None:
        """Evicts cached aggregates, so the next load reads the store."""
        cache = self.repository.cache
        if cache is None:
            return
        for aggregate_id in aggregate_ids:
            with contextlib.suppress(KeyError):
                cache.get(aggregate_id, evict=True)

    def _execute_alone(self, command: Command[Any]) -> Any:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            uow = self.unit_of_work()
            try:
                result = command.execute(uow)
                self._store(uow.changed())
            except IntegrityError as conflict:
                # Another writer got there first: forget what we had, reload, decide again.
                log.info("conflict on attempt %d for %r: %s", attempt, command, conflict)
                self._forget(uow.touched())
                continue
            except Exception as error:
                log.exception("command failed: %r", command)
                self._forget(uow.touched())
                return error
            return result
        return IntegrityError(f"gave up after {MAX_ATTEMPTS} conflicting attempts: {command!r}")
