"""Simulated charging stations speaking raw OCPP-J (1.6 or 2.0.1) to any CSMS.

A station waits for each answer before its next call, as a real one does. It records every
answer's latency by kind of message, every error, and the transactions it ran, so that they can
be looked for in the CSMS's read side afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from websockets.exceptions import InvalidStatus, WebSocketException

from bench.wire import Line, open_line

# The messages that change a station's state; the steady target counts only these.
STATE_CHANGING = frozenset(
    {"StatusNotification", "MeterValues", "StartTransaction", "StopTransaction", "TransactionEvent"}
)


@dataclass
class Ran:
    """A transaction a station ran: what the CSMS must show for it."""

    station_id: str
    transaction_id: str | None  # None: a 1.6 start that was not answered
    energy_wh: int
    ended_at: float  # when the station had the answer to its last message (time.time())


@dataclass
class Tally:
    """What the stations of one process saw since the last report."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # by kind: boot/state/other
    errors: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)  # answers worth counting, not errors
    connected: int = 0
    transactions: list[Ran] = field(default_factory=list)

    def answered(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)

    def take(self) -> Tally:
        """This tally's contents, leaving it empty but for the connection count."""
        taken = Tally(self.latencies, self.errors, self.notes, self.connected, self.transactions)
        self.latencies, self.errors, self.notes, self.transactions = {}, Counter(), Counter(), []
        return taken


_JSON = json.JSONEncoder(separators=(",", ":"))


def kind_of(action: str) -> str:
    if action == "BootNotification":
        return "boot"
    return "state" if action in STATE_CHANGING else "other"


def iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def station_url(base: str, station_id: str, password: str | None) -> str:
    """The station's endpoint; with a password, carrying it as HTTP Basic credentials."""
    url = f"{base.rstrip('/')}/{station_id}"
    if password is None:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{quote(station_id, safe='')}:{quote(password, safe='')}@{rest}"


class Station:
    """One station; `protocol` is "ocpp1.6" or "ocpp2.0.1"."""

    def __init__(
        self,
        url: str,
        station_id: str,
        protocol: str,
        tally: Tally,
        timeout: float,
        password: str | None = None,
        cafile: str | None = None,
    ):
        self.url = station_url(url, station_id, password)
        self.cafile = cafile
        self.station_id = station_id
        self.protocol = protocol
        self.tally = tally
        self.timeout = timeout
        self.line: Line | None = None
        self._ids = itertools.count()
        self.meter_wh = 0

    @property
    def v16(self) -> bool:
        return self.protocol == "ocpp1.6"

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        assert self.line is not None
        started = time.perf_counter()
        message_id = str(next(self._ids))
        self.line.send(_JSON.encode([2, message_id, action, payload]))
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._answer_to(self.line, message_id)
        except TimeoutError:
            self.tally.errors[f"timeout {action}"] += 1
            return None
        self.tally.answered(kind_of(action), time.perf_counter() - started)
        if reply[0] != 3:
            self.tally.errors[f"CallError {action} {reply[2]}"] += 1
            return None
        answer: dict[str, Any] = reply[2]
        return answer

    async def _answer_to(self, line: Line, message_id: str) -> list[Any]:
        """The answer to this call; answers to calls that timed out before are counted."""
        while True:
            reply: list[Any] = json.loads(await line.recv())
            if reply[1] == message_id:
                return reply
            self.tally.errors["answer after its call timed out"] += 1

    async def connect(self, give_up_at: float) -> bool:
        """Connects; a server that refuses with 503 is obeyed: again after its Retry-After."""
        while True:
            try:
                # No pings of our own: heartbeats keep the line alive, as on a real station.
                async with asyncio.timeout(self.timeout):
                    self.line = await open_line(self.url, self.protocol, cafile=self.cafile)
            except InvalidStatus as refused:
                retry_after = refused.response.headers.get("Retry-After", "")
                if refused.response.status_code != 503 or not retry_after.isdigit():
                    self.tally.errors[f"connect refused ({refused.response.status_code})"] += 1
                    return False
                if time.time() + int(retry_after) >= give_up_at:
                    self.tally.errors["connect still refused with 503 at the end"] += 1
                    return False
                self.tally.notes["connections refused with 503, then retried"] += 1
                await asyncio.sleep(int(retry_after))
                continue
            except (OSError, TimeoutError, WebSocketException) as error:
                self.tally.errors[f"connect {type(error).__name__}"] += 1
                return False
            self.tally.connected += 1
            return True

    async def close(self) -> None:
        if self.line is not None:
            await self.line.close()
            self.tally.connected -= 1

    async def boot(self, give_up_at: float) -> bool:
        """Boots until accepted; a Pending answer is obeyed: boot again after its interval."""
        while True:
            answer = await self._boot_once()
            status = None if answer is None else answer.get("status")
            if status == "Accepted":
                self.tally.notes["stations accepted"] += 1
                return True
            if status != "Pending":
                return False
            self.tally.notes["boots answered Pending, then retried"] += 1
            retry_at = time.time() + float(answer["interval"]) if answer else 0.0
            if retry_at > give_up_at:
                self.tally.errors["boot still Pending at the end"] += 1
                return False
            await asyncio.sleep(retry_at - time.time())

    async def _boot_once(self) -> dict[str, Any] | None:
        payload: dict[str, Any]
        if self.v16:
            payload = {"chargePointVendor": "Bench", "chargePointModel": "Sim-16"}
        else:
            payload = {
                "chargingStation": {"vendorName": "Bench", "model": "Sim-201"},
                "reason": "PowerUp",
            }
        return await self.call("BootNotification", payload)

    async def status(self, status: str) -> None:
        if self.v16:
            payload: dict[str, Any] = {"connectorId": 1, "errorCode": "NoError", "status": status}
        else:
            payload = {
                "timestamp": iso(datetime.now(UTC)),
                "connectorStatus": "Occupied" if status == "Charging" else status,
                "evseId": 1,
                "connectorId": 1,
            }
        await self.call("StatusNotification", payload)

    async def heartbeat(self) -> None:
        await self.call("Heartbeat", {})

    async def transaction(self, meter_values: int, pause: float, started_at: datetime) -> None:
        """Runs one transaction; `started_at` in the past replays it as queued offline."""
        offline = started_at < datetime.now(UTC) - timedelta(seconds=5)
        step = timedelta(seconds=30) if offline else timedelta(0)
        at = started_at
        start_wh = self.meter_wh
        tx = await self._start(at, offline)
        for _ in range(meter_values):
            if pause:
                await asyncio.sleep(pause)
            at = at + step if offline else datetime.now(UTC)
            self.meter_wh += 250
            await self._meter(tx, at, offline)
        at = at + step if offline else datetime.now(UTC)
        await self._stop(tx, at, offline)
        ran = Ran(self.station_id, tx, self.meter_wh - start_wh, time.time())
        self.tally.transactions.append(ran)

    def _sample(self, at: datetime, context: str | None = None) -> dict[str, Any]:
        value: dict[str, Any] = {
            "value": str(self.meter_wh) if self.v16 else self.meter_wh,
            "measurand": "Energy.Active.Import.Register",
        }
        if self.v16:
            value["unit"] = "Wh"
        if context:
            value["context"] = context
        return {"timestamp": iso(at), "sampledValue": [value]}

    async def _start(self, at: datetime, offline: bool) -> str | None:
        if self.v16:
            payload = {
                "connectorId": 1,
                "idTag": "BENCH",
                "meterStart": self.meter_wh,
                "timestamp": iso(at),
            }
            answer = await self.call("StartTransaction", payload)
            return None if answer is None else str(answer["transactionId"])
        tx = uuid.uuid4().hex[:32]
        self._seq = itertools.count()
        await self._event("Started", "Authorized", tx, at, offline, "Transaction.Begin")
        return tx

    async def _meter(self, tx: str | None, at: datetime, offline: bool) -> None:
        if self.v16:
            payload: dict[str, Any] = {"connectorId": 1, "meterValue": [self._sample(at)]}
            if tx is not None:
                payload["transactionId"] = int(tx)
            await self.call("MeterValues", payload)
        else:
            await self._event("Updated", "MeterValuePeriodic", tx, at, offline, "Sample.Periodic")

    async def _stop(self, tx: str | None, at: datetime, offline: bool) -> None:
        if not self.v16:
            await self._event("Ended", "EVDeparted", tx, at, offline, "Transaction.End")
        elif tx is not None:
            payload = {
                "transactionId": int(tx),
                "meterStop": self.meter_wh,
                "timestamp": iso(at),
                "reason": "Local",
            }
            await self.call("StopTransaction", payload)

    async def _event(
        self, event: str, trigger: str, tx: str | None, at: datetime, offline: bool, context: str
    ) -> None:
        info: dict[str, Any] = {"transactionId": tx}
        if event == "Ended":
            info["stoppedReason"] = "Local"
        payload: dict[str, Any] = {
            "eventType": event,
            "timestamp": iso(at),
            "triggerReason": trigger,
            "seqNo": next(self._seq),
            "transactionInfo": info,
            "meterValue": [self._sample(at, context)],
        }
        if offline:
            payload["offline"] = True
        if event == "Started":
            payload["idToken"] = {"idToken": "BENCH", "type": "Central"}
            payload["evse"] = {"id": 1, "connectorId": 1}
        await self.call("TransactionEvent", payload)
