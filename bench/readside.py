"""Checks, over GraphQL, that the read side shows every transaction the stations ran."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

from bench.sim import Ran

BATCH = 100  # stations per GraphQL request, one aliased field each
PARALLEL = 4
CATCH_UP_SECONDS = 120.0


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


async def _shown(url: str, token: str | None, station_ids: list[str]) -> dict[str, Any]:
    """Each station's transactions as the read side shows them, by transaction id."""
    shown: dict[str, Any] = {}
    gate = asyncio.Semaphore(PARALLEL)

    async def fetch(batch: list[str]) -> None:
        async with gate:
            data = (await asyncio.to_thread(_post, url, token, _query(batch)))["data"]
        for i, station_id in enumerate(batch):
            for row in data[f"s{i}"]:
                shown[f"{station_id}/{row['transactionId']}"] = row

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


async def check(url: str, token: str | None, ran: list[Ran]) -> list[str]:
    """Polls until every transaction is shown and correct; reports how long that took."""
    started = time.monotonic()
    complete = [tx for tx in ran if tx.transaction_id is not None]
    stations = sorted({tx.station_id for tx in complete})
    unanswered = len(ran) - len(complete)
    while True:
        problems = _problems(complete, await _shown(url, token, stations))
        waited = time.monotonic() - started
        if not problems or waited > CATCH_UP_SECONDS:
            break
        print(f"  read side: {len(problems)} transactions not shown yet", flush=True)
        await asyncio.sleep(0.2)
    lines = [
        f"read side       {len(complete) - len(problems)}/{len(complete)} transactions shown "
        f"and correct, {waited:.1f} s after the load ended"
        + (f" ({unanswered} starts were not answered)" if unanswered else "")
    ]
    lines += [f"  {problem}" for problem in problems[:10]]
    ok = not problems and waited < 1.0
    lines.append(
        f"  {'PASS' if ok else 'FAIL'}  projections keep up: caught up {waited:.1f} s after "
        "the load ended (< 1 s)"
    )
    return lines
