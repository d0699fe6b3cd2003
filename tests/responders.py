"""Real OCPP station clients (the `ocpp` package) that answer the CSMS's calls.

A responder answers every remote operation of its version, or refuses (`reject`), or fails
with a CALLERROR (`error`), or never answers (`silent`). It keeps every call it received, as
the station saw it, and uploads a diagnostics file when asked for one, as real stations do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import websockets
from ocpp.charge_point import ChargePoint
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call_result as result21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

from tests.support import ServerProcess, offer

DIAGNOSTICS = b"2026-11-25T10:00:00Z boot ok\n2026-11-25T10:05:00Z relay welded? no\n"
SCHEDULE16 = {
    "charging_rate_unit": "W",
    "charging_schedule_period": [{"start_period": 0, "limit": 7360.5}],
}

Answer = Callable[[dict[str, Any]], dict[str, Any]]


def _status(word: str) -> Answer:
    return lambda payload: {"status": word}


def _variables(status: str, key: str) -> Answer:
    def answer(payload: dict[str, Any]) -> dict[str, Any]:
        data = payload["get_variable_data" if key == "get" else "set_variable_data"]
        results = [
            {
                "attribute_status": status,
                "component": item["component"],
                "variable": item["variable"],
                **({"attribute_value": "300"} if key == "get" and status == "Accepted" else {}),
            }
            for item in data
        ]
        return {f"{key}_variable_result": results}

    return answer


# What a station of either version answers, where both versions answer alike.
SAME_ANSWER: dict[str, Answer] = {
    action: _status("Accepted")
    for action in (
        "Reset",
        "ChangeAvailability",
        "TriggerMessage",
        "SetChargingProfile",
        "ClearChargingProfile",
        "ReserveNow",
        "CancelReservation",
        "SendLocalList",
        "ClearCache",
    )
} | {
    "UnlockConnector": _status("Unlocked"),
    "DataTransfer": lambda p: {"status": "Accepted", "data": "pong"},
}
SAME_REFUSAL: dict[str, Answer] = {
    action: _status("Rejected")
    for action in (
        "Reset",
        "ChangeAvailability",
        "TriggerMessage",
        "SetChargingProfile",
        "GetCompositeSchedule",
        "ReserveNow",
        "CancelReservation",
        "ClearCache",
        "DataTransfer",
    )
} | {
    "UnlockConnector": _status("UnlockFailed"),
    "ClearChargingProfile": _status("Unknown"),
    "SendLocalList": _status("Failed"),
}

ANSWERS_16: dict[str, dict[str, Answer]] = {
    "answer": SAME_ANSWER
    | {
        "RemoteStartTransaction": _status("Accepted"),
        "RemoteStopTransaction": _status("Accepted"),
        "GetConfiguration": lambda p: {
            "configuration_key": [{"key": k, "readonly": False, "value": "300"} for k in p["key"]]
        },
        "ChangeConfiguration": _status("Accepted"),
        "UpdateFirmware": lambda p: {},
        "GetDiagnostics": lambda p: {"file_name": "diagnostics.log"},
        "GetLog": lambda p: {"status": "Accepted", "filename": "security.log"},
        "GetCompositeSchedule": lambda p: {
            "status": "Accepted",
            "connector_id": p["connector_id"],
            "schedule_start": "2026-11-25T10:00:00Z",
            "charging_schedule": SCHEDULE16,
        },
        "GetLocalListVersion": lambda p: {"list_version": 3},
    },
    "reject": SAME_REFUSAL
    | {
        "RemoteStartTransaction": _status("Rejected"),
        "RemoteStopTransaction": _status("Rejected"),
        "ChangeConfiguration": _status("Rejected"),
    },
}

ANSWERS_201: dict[str, dict[str, Answer]] = {
    "answer": SAME_ANSWER
    | {
        "RequestStartTransaction": _status("Accepted"),
        "RequestStopTransaction": _status("Accepted"),
        "GetVariables": _variables("Accepted", "get"),
        "GetBaseReport": _status("Accepted"),
        "SetVariables": _variables("Accepted", "set"),
        "UpdateFirmware": _status("Accepted"),
        "GetLog": lambda p: {"status": "Accepted", "filename": "diagnostics.log"},
        "GetCompositeSchedule": _status("Accepted"),
        "GetLocalListVersion": lambda p: {"version_number": 3},
    },
    "reject": SAME_REFUSAL
    | {
        "RequestStartTransaction": _status("Rejected"),
        "RequestStopTransaction": _status("Rejected"),
        "SetVariables": _variables("Rejected", "set"),
        "UpdateFirmware": _status("Rejected"),
        "GetLog": _status("Rejected"),
    },
}


@dataclass
class Responder:
    """What a station received and how it behaves; `client` is the real charge point."""

    client: ChargePoint
    behaviour: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    uploads: list[httpx.Response] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def last(self, action: str) -> dict[str, Any]:
        return next(payload for name, payload in reversed(self.received) if name == action)

    async def uploaded(self) -> httpx.Response:
        while self._tasks:
            await asyncio.gather(*self._tasks)
        return self.uploads[-1]

    def install(self, answers: dict[str, dict[str, Answer]], results: ModuleType) -> None:
        for action in answers["answer"]:
            self.client.route_map[action] = {"_on_action": self._handler(action, answers, results)}

    def _handler(
        self, action: str, answers: dict[str, dict[str, Answer]], results: ModuleType
    ) -> Callable[..., Any]:
        async def handle(**payload: Any) -> Any:
            self.received.append((action, payload))
            if self.behaviour == "silent":
                await asyncio.Event().wait()  # never answers
            if self.behaviour == "error":
                raise RuntimeError("the station's firmware crashed")
            answer = answers[self.behaviour].get(action) or answers["answer"][action]
            if action in ("GetDiagnostics", "GetLog") and self.behaviour == "answer":
                self._upload_later(payload)
            return getattr(results, action)(**answer(payload))

        return handle

    def _upload_later(self, payload: dict[str, Any]) -> None:
        url = payload.get("location") or payload["log"]["remote_location"]
        task = asyncio.create_task(self._upload(url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _upload(self, url: str) -> None:
        await asyncio.sleep(0.2)  # after the answer, as a station does
        async with httpx.AsyncClient() as http:
            files = {"file": ("diagnostics.log", DIAGNOSTICS, "text/plain")}
            self.uploads.append(await http.post(url, files=files, timeout=10))


@contextlib.asynccontextmanager
async def responder(
    server: ServerProcess, station_id: str, protocol: str, behaviour: str = "answer"
) -> AsyncIterator[Responder]:
    """A station of that version, connected and booted, answering the CSMS's calls."""
    client_class, answers, results = {
        "ocpp1.6": (ChargePoint16, ANSWERS_16, result16),
        "ocpp2.0.1": (ChargePoint201, ANSWERS_201, result201),
        "ocpp2.1": (ChargePoint21, ANSWERS_201, result21),
    }[protocol]
    async with websockets.connect(
        server.ocpp_url(station_id),
        subprotocols=offer(protocol),
    ) as ws:
        station = Responder(client_class(station_id, ws, response_timeout=15), behaviour)
        station.install(answers, results)
        task = asyncio.create_task(station.client.start())
        try:
            yield station
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
