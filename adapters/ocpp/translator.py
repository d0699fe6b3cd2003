"""What a protocol translator offers the gateway."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from adapters.ocpp import rpc
from adapters.ocpp.operations import Encoder, InvalidRequest, OutboundCall, Unsupported
from adapters.ocpp.rpc import Call, Fault, RpcError
from domain.commands import Command
from domain.remote import Operation

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
    known_actions: frozenset[str]  # every action the version defines, handled here or not

    def encode(self, operation: str, arguments: dict[str, Any], number: int) -> OutboundCall:
        """The call that performs a remote operation; raises Unsupported or InvalidRequest."""
        ...

    async def answer(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        """The CALLRESULT payload, after the commands it caused are committed.

        Raises RpcError for a call it will not answer with a result.
        """
        ...


Handler = Callable[[Any, Inbound, Submit], Awaitable[dict[str, Any]]]


class Dispatcher:
    """Answers a CALL with the handler registered for its action, after schema validation.

    An action the version defines but a CSMS does not handle is NotSupported; one the version
    does not define at all is NotImplemented (the OCPP-J error table, not the `ocpp` package's).
    """

    version: str
    known_actions: frozenset[str]
    handlers: Mapping[str, Handler]
    encoders: Mapping[Operation, Encoder]

    def encode(self, operation: str, arguments: dict[str, Any], number: int) -> OutboundCall:
        encoder = self.encoders.get(Operation(operation))
        if encoder is None:
            raise Unsupported(f"OCPP {self.version} has no {operation}")
        try:
            outbound = encoder(arguments, number)
        except (KeyError, TypeError) as missing:
            raise InvalidRequest(f"{operation} needs {missing}") from None
        problem = rpc.schema_problem(self.version, rpc.CALL, outbound.action, outbound.payload)
        if problem is not None:
            raise InvalidRequest(f"not a valid OCPP {self.version} {outbound.action}: {problem}")
        return outbound

    async def answer(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        call = inbound.call
        handler = self.handlers.get(call.action)
        if handler is None:
            if call.action in self.known_actions:
                raise RpcError(
                    Fault.NOT_SUPPORTED,
                    f"{call.action} is not handled by this CSMS over OCPP {self.version}",
                    call.message_id,
                )
            raise RpcError(
                Fault.NOT_IMPLEMENTED,
                f"{call.action} is not an OCPP {self.version} action",
                call.message_id,
            )
        rpc.validate_call(self.version, call)
        return await handler(self, inbound, submit)
