"""What the server counts as it runs, for Prometheus to scrape at /metrics.

Each worker is a process of its own. With several, `csms serve` gives them a directory in common
before they start (prometheus_client's multiprocess mode: each process writes its values to
files there) and the worker answering a scrape adds every worker's values up. The projections'
standing is read from the database at the scrape, since any worker may run any projection.

Counting must cost the answer path next to nothing: an answered message adds to one counter and
one histogram whose children are looked up once per action, not built per message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters import projection_admin
from adapters.projection_host import ProjectionClass, lock_key

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own setting

# Seconds from a request's frame read to its answer written: commits take a few milliseconds
# to a few tens, so the buckets are finest there.
ANSWER_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
    2.0, 5.0, 10.0,
)  # fmt: skip

REQUESTS = Counter(
    "csms_ocpp_requests",
    "Requests from stations, by OCPP version, action and outcome (answered, or refused with a "
    "CallError)",
    ["version", "action", "outcome"],
)
ANSWER_SECONDS = Histogram(
    "csms_ocpp_answer_seconds",
    "Seconds from a request's frame read to its answer written, the commit of its events "
    "included, by OCPP version and action",
    ["version", "action"],
    buckets=ANSWER_BUCKETS,
)
CONNECTIONS = Gauge(
    "csms_station_connections",
    "Stations connected",
    multiprocess_mode="livesum",
)
REFUSED = Counter(
    "csms_station_connections_refused",
    "Connections refused at the handshake, by reason",
    ["reason"],
)
BATCHES = Counter("csms_writer_batches", "Batches of commands committed (or failed)")
COMMANDS = Counter("csms_writer_commands", "Commands run by the command writers")
BATCH_SECONDS = Histogram(
    "csms_writer_batch_seconds",
    "Seconds a command writer took to run a batch and commit its events",
    buckets=ANSWER_BUCKETS,
)
BACKLOG = Gauge(
    "csms_writer_backlog",
    "Commands waiting for a command writer",
    multiprocess_mode="livesum",
)
LOOP_LAG = Gauge(
    "csms_event_loop_lag_seconds",
    "How far behind the busiest worker's event loop is",
    multiprocess_mode="livemax",
)


class AnswerMetrics:
    """The children of the answer metrics for one OCPP version, looked up once per action."""

    def __init__(self, version: str) -> None:
        self._version = version
        self._children: dict[tuple[str, bool], tuple[Counter, Histogram]] = {}

    def answered(self, action: str, refused: bool, seconds: float) -> None:
        children = self._children.get((action, refused))
        if children is None:
            outcome = "refused" if refused else "answered"
            children = (
                REQUESTS.labels(self._version, action, outcome),
                ANSWER_SECONDS.labels(self._version, action),
            )
            self._children[(action, refused)] = children
        count, seconds_of = children
        count.inc()
        seconds_of.observe(seconds)

    def sent(self, action: str) -> None:
        """Counts a SEND (2.1), which is never answered."""
        REQUESTS.labels(self._version, action, "sent").inc()


@contextmanager
def shared_by_workers() -> Iterator[None]:
    """A directory the worker processes started within keep their values in, removed after."""
    directory = tempfile.mkdtemp(prefix="csms-metrics-")
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_DIR]
        shutil.rmtree(directory, ignore_errors=True)


def worker_gone(pid: int) -> None:
    """Forgets a dead worker's live gauges (its counts stay in the totals)."""
    if os.environ.get(MULTIPROCESS_DIR):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class _Projections(Collector):
    """Each projection's position and the events of its topics stored after it, read now."""

    def __init__(self, database_url: str, projections: Sequence[ProjectionClass]) -> None:
        self._database_url = database_url
        self._projections = projections

    def collect(self) -> Iterator[Metric]:
        position = GaugeMetricFamily(
            "csms_projection_position",
            "The notification id of the last event the projection applied",
            labels=["projection"],
        )
        behind = GaugeMetricFamily(
            "csms_projection_events_behind",
            "Events of the projection's topics stored and not yet applied",
            labels=["projection"],
        )
        with psycopg.connect(self._database_url, autocommit=True, connect_timeout=5) as conn:
            for projection in self._projections:
                standing = projection_admin.standing(conn, projection, lock_key(projection))
                position.add_metric([projection.name], standing.position)
                behind.add_metric([projection.name], standing.behind)
        yield position
        yield behind


def exposition(database_url: str, projections: Sequence[ProjectionClass]) -> tuple[bytes, str]:
    """Every worker's metrics and the projections' standing, in Prometheus' text format, with
    its content type. Blocking: it reads files and the database."""
    if os.environ.get(MULTIPROCESS_DIR):
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)  # type: ignore[no-untyped-call]
    else:
        workers = REGISTRY  # one process: its own values, with its process and GC metrics
    read_now = CollectorRegistry()
    read_now.register(_Projections(database_url, projections))
    return generate_latest(workers) + generate_latest(read_now), CONTENT_TYPE_LATEST
