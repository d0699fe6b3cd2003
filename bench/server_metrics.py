"""The server's own account of its answer times, from its Prometheus histogram (csms's /metrics).

The load measures a message from the station's side: from its send to the answer read, the
load's own scheduling and the network included. The server's histogram counts from the frame
read to the answer written. Taken over the same window, the two tell the server's share of the
latency from the rest.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

ANSWER_BUCKETS = "csms_ocpp_answer_seconds_bucket"

# Cumulative counts by upper bound, of every series of the histogram for the chosen actions.
Buckets = dict[float, float]


def scrape(url: str, actions: Iterable[str]) -> Buckets:
    """The answer histogram's buckets for `actions`, summed over versions."""
    chosen = set(actions)
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    buckets: Buckets = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == ANSWER_BUCKETS and sample.labels.get("action") in chosen:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def quantile(first: Buckets, last: Buckets, q: float) -> float | None:
    """The q-quantile of the answers counted between two scrapes, interpolated within its
    bucket as Prometheus' histogram_quantile does; None if none was counted."""
    bounds = sorted(last)
    counts = [last[bound] - first.get(bound, 0.0) for bound in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    below, lower = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower  # beyond the last finite bucket: its bound is all that is known
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        below, lower = count, bound
    return lower


def report(first: Buckets, last: Buckets) -> list[str]:
    """The server's p50/p95/p99 between two scrapes, as a line of the load's report."""
    found = [quantile(first, last, q) for q in (0.5, 0.95, 0.99)]
    if any(value is None for value in found):
        return []
    p50, p95, p99 = (value * 1000 for value in found if value is not None)
    answered = int(last.get(float("inf"), 0.0) - first.get(float("inf"), 0.0))
    return [
        f"  server {answered:>9}  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms"
        "  (state-changing, in the window: the server's own count, frame read to answer "
        "written; from its /metrics buckets)"
    ]
