"""Applies a projection's events to its view in batches, one PostgreSQL transaction per batch.

It polls the event store rather than following each event: under load a poll finds hundreds of
new events, which then cost one commit instead of hundreds. Notification ids are assigned and
committed under the writers' lock, so once an id is visible every smaller one is too, and
reading up to the largest visible id never skips an event committed later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import Environment

from adapters.postgres import EventRecorder, Share, events_query
from domain.service import CSMS
from projections.base import AppliedInStore, History, ParallelRebuild, SqlView

# Events applied in one transaction at most. A view far behind (a rebuild, an overload) gets
# full batches, and a full batch costs less per event: each transaction's row is written once
# per batch, however many of its events the batch holds. Rebuilding transactions from 672,576
# events: 5,581 and 6,104 events/s in batches of 500, 9,062 and 9,485 in batches of 5,000.
BATCH = 5000


def history_of(app: CSMS) -> History:
    """What a view reads a forgotten aggregate's events with: the store's, before a version."""

    def history(aggregate_id: UUID, version: int) -> list[Any]:
        stored = app.recorder.select_events(aggregate_id, lte=version - 1)
        return [app.mapper.to_domain_event(event) for event in stored]

    return history


def tracking_table(projection: type[Projection[Any]]) -> str:
    """The table of the projection's tracking positions."""
    return f"{projection.name.lower()}_tracking"


SHARE_PREFIX = f"{CSMS.name}#"  # of the names shares of a parallel rebuild record under
SHARE_TRACKING_NAMES = f"{SHARE_PREFIX}%"  # every share's name, as a LIKE pattern


def share_tracking_name(share: Share) -> str:
    """The name a share of a parallel rebuild records its position under."""
    return f"{SHARE_PREFIX}{share.number}/{share.of}"


def shares_position(positions: Mapping[str, int]) -> int:
    """The last event every share of a parallel rebuild has applied up to, from the positions
    by tracking name; 0 until each share has recorded one."""
    shares: dict[int, int] = {}
    count = 0
    for name, position in positions.items():
        if name.startswith(SHARE_PREFIX):
            number, _, of = name.removeprefix(SHARE_PREFIX).partition("/")
            shares[int(number)], count = position, int(of)
    return min(shares.values()) if shares and len(shares) == count else 0


def parallel_rebuild(projection: type[Projection[Any]]) -> ParallelRebuild | None:
    """How the projection may be rebuilt by several processes, or None if only by one."""
    found: ParallelRebuild | None = getattr(projection, "parallel_rebuild", None)
    return found


def open_view(
    env: Mapping[str, str], projection: type[Projection[Any]], view: type[SqlView], **settings: str
) -> tuple[InfrastructureFactory[SqlView], SqlView]:
    """The projection's view, on a factory of its own with one connection; close the factory
    when done. `settings` override the environment's (CREATE_TABLE, POSTGRES_SCHEMA, ...)."""
    factory = InfrastructureFactory[SqlView].construct(
        env=Environment(projection.name, {**env, "POSTGRES_POOL_SIZE": "1", **settings})
    )
    return factory, factory.tracking_recorder(view)


class BatchRunner:
    def __init__(
        self,
        env: Mapping[str, str],
        projection: type[Projection[Any]],
        view: type[SqlView],
        batch: int = BATCH,
        share: Share | None = None,
    ) -> None:
        """`share`: apply only that share of the aggregates' events (a parallel rebuild)."""
        # The reading application and the view open no tables: the store made them.
        settings = {**env, "CSMS_CREATE_TABLE": "n", "CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
        self._app = CSMS(settings)
        self._factory, self.view = open_view(settings, projection, view)
        self.view.history = history_of(self._app)
        self.projection = projection(view=self.view)
        # Checked once: a protocol's isinstance inspects the class each time.
        self._in_store = self.projection if isinstance(self.projection, AppliedInStore) else None
        self.batch = batch
        self._share = share
        rebuild = parallel_rebuild(projection)
        self._shared_topics = rebuild.shared_topics if rebuild else ()
        # A share records its position under a name of its own: the projection's own position
        # is recorded once every share is done.
        self._tracking_name = CSMS.name if share is None else share_tracking_name(share)
        # Where reading resumes: past the last event applied, or past the last one scanned when
        # the projection's topics are rare, so that no poll scans the same events again.
        self.position = self.view.max_tracking_id(self._tracking_name) or 0
        self.stored = self.position  # the last event stored when it last read

    @property
    def behind(self) -> int:
        """Events stored after its position when it last read (of any topic)."""
        return max(0, self.stored - self.position)

    def step(self, until: int | None = None, with_shared: bool = False) -> int:
        """Applies the next batch of events stored up to `until` (or now); returns its size.

        A share's runner applies the events of the projection's shared topics only if
        `with_shared`.
        """
        last = self._app.recorder.max_notification_id() or 0
        self.stored = last
        if until is not None:
            last = min(last, until)
        if last <= self.position:
            return 0
        events = events_query(
            self.position,
            last,
            self.batch,
            self.projection.topics,
            self._share,
            self._shared_topics,
            with_shared,
        )
        if self._in_store is not None:
            with self.view.batch():
                applied, last_applied = self._in_store.apply_in_store(*events, self._tracking_name)
        else:
            applied, last_applied = self._apply(events)
        self.position = last_applied if applied == self.batch else last
        return applied

    def _apply(self, events: tuple[str, dict[str, Any]]) -> tuple[int, int]:
        """Applies the events one by one, decoded; returns how many and the last one's id."""
        assert isinstance(self._app.recorder, EventRecorder)
        notifications = self._app.recorder.select(*events)
        if not notifications:
            return 0, 0
        # Looked up once: each lookup of a dispatching method builds a new wrapper.
        process_event = self.projection.process_event
        to_domain_event = self._app.mapper.to_domain_event
        with self.view.batch():
            for notification in notifications:
                process_event(
                    to_domain_event(notification), Tracking(self._tracking_name, notification.id)
                )
        return len(notifications), notifications[-1].id

    def forget(self) -> None:
        """Drops what the view kept in memory: it reads it back from its tables."""
        self.view.kept.clear()

    def close(self) -> None:
        self._factory.close()
        self._app.close()

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
