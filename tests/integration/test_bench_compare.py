"""bench.compare: one load against each server it starts, the figures side by side and their
ratios with verdicts."""

from __future__ import annotations

import re
import subprocess
import sys


def test_the_same_load_runs_against_each_target_and_their_ratio_is_judged(
    database_url: str,
) -> None:
    run = ["--stations", "4", "--processes", "1", "--duration", "2", "--warmup", "1"]
    run += ["--workers", "1", "--only", "store", "memory", "--database-url", database_url]
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", *run],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    rows = re.findall(r"^(\w+) +(\d+) +[\d.]+ ms +([\d.]+) us$", done.stdout, re.MULTILINE)
    assert [name for name, _, _ in rows] == ["store", "memory"], done.stdout
    # Each answered the load, and the machine's speed was timed before each.
    assert all(int(rate) > 0 and float(speed) > 0 for _, rate, speed in rows), done.stdout
    judged = re.search(r"(PASS|FAIL)  store / memory = ([\d.]+) \(>= 0.67\)", done.stdout)
    assert judged, done.stdout
    store, memory = (int(rate) for _, rate, _ in rows)  # rounded: the ratio is of the exact rates
    assert abs(float(judged[2]) - store / memory) < 0.01 + 1 / memory, done.stdout
    assert judged[1] == ("PASS" if float(judged[2]) >= 0.67 else "FAIL"), done.stdout
