"""What a protocol translator offers the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters.ocpp.rpc import Call
from domain.commands import Command

Submit = Callable[[Command[Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Inbound:
    """A CALL from a station, as the translator receives it."""

    station_id: str
    call: Call
    received_at: datetime


class Translator(Protocol):
    version: str  # "1.6", "2.0.1", "2.1": the `ocpp` package's schema set
    subprotocol: str  # as negotiated on the WebSocket

    async def answer(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        """The CALLRESULT payload, after the commands it caused are committed.

        Raises RpcError for a call it will not answer with a result.
        """
        ...
