"""What the server counts as it runs, for Prometheus to scrape at /metrics.

Each worker is a process of its own. With several, `csms serve` gives them a directory in common
before they start (prometheus_client's multiprocess mode: each process writes its values to
files there) and the worker answering a scrape adds every worker's values up. The projections'
standing is set by the worker that runs each.

Counting must cost the answer path next to nothing: an answered message adds to one counter and
one histogram whose children are looked up once per action, not built per message.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

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
BAD_FRAMES = Counter(
    "csms_ocpp_bad_frames",
    "Frames from stations that were no valid OCPP-J message (not JSON, say), by OCPP version",
    ["version"],
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
# Set by the worker running each projection; one that stops running it sets them to 0, so the
# largest value among the live workers is the projection's.
PROJECTION_POSITION = Gauge(
    "csms_projection_position",
    "The notification id the projection has read past (its last event applied, or later events "
    "of other topics)",
    ["projection"],
    multiprocess_mode="livemax",
)
PROJECTION_BEHIND = Gauge(
    "csms_projection_events_behind",
    "Events stored after its position when the projection last read (of every topic, so an "
    "upper bound for a projection of a few; 0 once it keeps up)",
    ["projection"],
    multiprocess_mode="livemax",
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


def exposition() -> tuple[bytes, str]:
    """Every worker's metrics in Prometheus' text format, with its content type. Blocking: with
    several workers, it reads their files."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    # One process: its own values, with its process and garbage collector metrics.
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
