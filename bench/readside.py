"""Checks, over GraphQL, that the read side shows every transaction the stations ran."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from bench.sim import Ran

BATCH = 100  # stations per GraphQL request, one aliased field each
PARALLEL = 4
CATCH_UP_SECONDS = 120.0
LAG_POLL_SECONDS = 0.02


def _query(station_ids: list[str]) -> str:
    fields = " ".join(
        f"s{i}: transactions(stationId: {json.dumps(station_id)}, first: 1000)"
        " { transactionId active energyWh }"
        for i, station_id in enumerate(station_ids)
    )
    return "{ " + fields + " }"


def _post(url: str, token: str | None, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"}
        | ({"Authorization": f"Bearer {token}"} if token else {}),
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.load(response)
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL refused the check: {answer['errors'][0]['message']}")
    return answer


def problem_with(url: str, token: str | None) -> str | None:
    """Why the read side cannot be checked at `url` with `token`, asked before the load runs
    (a bad token found after it would waste the run); None if it can."""
    token_advice = "give --token a token that may read transactions (csms token create)"
    try:
        _post(url, token, _query(["-"]))
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code} {error.reason}; is that the GraphQL URL?"
    except urllib.error.URLError as error:
        return f"{error.reason}; is the server's API listening there?"
    except ValueError as error:  # the token makes no header: a line too many, say
        return f"{error}; {token_advice}, the secret alone"
    except RuntimeError as error:
        return f"{error}; {token_advice}"
    return None


def _fetch(url: str, token: str | None, station_ids: list[str]) -> dict[str, Any]:
    """The stations' transactions as the read side shows them, by station/transaction id."""
    data = _post(url, token, _query(station_ids))["data"]
    return {
        f"{station_id}/{row['transactionId']}": row
        for i, station_id in enumerate(station_ids)
        for row in data[f"s{i}"]
    }


async def _shown(url: str, token: str | None, station_ids: list[str]) -> dict[str, Any]:
    """Each station's transactions as the read side shows them, by transaction id."""
    shown: dict[str, Any] = {}
    gate = asyncio.Semaphore(PARALLEL)

    async def fetch(batch: list[str]) -> None:
        async with gate:
            shown.update(await asyncio.to_thread(_fetch, url, token, batch))

    batches = [station_ids[i : i + BATCH] for i in range(0, len(station_ids), BATCH)]
    await asyncio.gather(*(fetch(batch) for batch in batches))
    return shown


def _problems(ran: list[Ran], shown: dict[str, Any]) -> list[str]:
    problems = []
    for tx in ran:
        row = shown.get(f"{tx.station_id}/{tx.transaction_id}")
        if row is None:
            problems.append(f"{tx.station_id} transaction {tx.transaction_id}: missing")
        elif row["active"] or row["energyWh"] is None or float(row["energyWh"]) != tx.energy_wh:
            problems.append(
                f"{tx.station_id} transaction {tx.transaction_id}: active={row['active']} "
                f"energyWh={row['energyWh']}, expected stopped with {tx.energy_wh}"
            )
    return problems


async def check(url: str, token: str | None, ran: list[Ran], lags: list[float]) -> list[str]:
    """Whether every transaction is shown and right; with the lags sampled during the load."""
    complete = [tx for tx in ran if tx.transaction_id is not None]
    started = time.monotonic()
    stations = sorted({tx.station_id for tx in complete})
    while True:
        problems = _problems(complete, await _shown(url, token, stations))
        waited = time.monotonic() - started
        if not problems or waited > CATCH_UP_SECONDS:
            break
        print(f"  read side: {len(problems)} transactions not shown yet", flush=True)
        await asyncio.sleep(0.2)
    unanswered = len(ran) - len(complete)
    lines = [
        f"read side       {len(complete) - len(problems)}/{len(complete)} transactions shown "
        "and correct" + (f" ({unanswered} starts were not answered)" if unanswered else "")
    ]
    lines += [f"  {problem}" for problem in problems[:10]]
    if lags:
        ordered = sorted(lags)
        worst = ordered[-1]
        lines.append(
            f"  lag           {len(lags)} samples: median {ordered[len(lags) // 2]:.2f} s, "
            f"worst {worst:.2f} s (a transaction's end to the view showing it; upper bounds)"
        )
        ok = not problems and worst < 1.0
        lines.append(
            f"  {'PASS' if ok else 'FAIL'}  projections keep up: worst lag {worst:.2f} s (< 1 s)"
        )
    return lines


class LagProbe(threading.Thread):
    """During the load, every few seconds, takes the transaction that ended last and measures
    how long until the view shows it ended.

    Each figure is an upper bound: the load processes report what ended every half second, so
    up to that much passes before the probe learns of a transaction.
    """

    def __init__(self, url: str, token: str | None, every: float = 2.0) -> None:
        super().__init__(name="lag-probe", daemon=True)
        self._url, self._token, self._every = url, token, every
        self._latest: Ran | None = None
        self._offered = threading.Event()
        self._stopping = threading.Event()
        self.lags: list[float] = []

    def offer(self, ran: list[Ran]) -> None:
        for tx in ran:
            if tx.transaction_id and (self._latest is None or tx.ended_at > self._latest.ended_at):
                self._latest = tx
                self._offered.set()

    def stop(self) -> None:
        self._stopping.set()
        self._offered.set()
        self.join()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._offered.clear()  # what was offered while measuring or pausing is too old
            self._offered.wait()
            latest = self._latest
            if latest is None or self._stopping.is_set():
                continue
            self._measure(latest)
            self._stopping.wait(self._every)

    def _measure(self, tx: Ran) -> None:
        while time.time() - tx.ended_at < CATCH_UP_SECONDS and not self._stopping.is_set():
            if not _problems([tx], _fetch(self._url, self._token, [tx.station_id])):
                self.lags.append(time.time() - tx.ended_at)
                return
            time.sleep(LAG_POLL_SECONDS)
