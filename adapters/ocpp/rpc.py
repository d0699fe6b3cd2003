"""OCPP-J RPC framing: parse frames, validate payloads, and answer errors as the spec says.

The `ocpp` package supplies the JSON schemas and validators (`fastjsonschema` compiles the
schemas of the requests stations send, the hot path). Its own dispatch is not used: it swaps
NotImplemented and NotSupported, sends no CALLERROR for a frame it cannot unpack, and handles
one message at a time per connection.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import fastjsonschema
from jsonschema.exceptions import ValidationError as SchemaError
from ocpp.messages import get_validator

CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4
CALL_RESULT_ERROR, SEND = 5, 6  # OCPP 2.1 only
UNKNOWN_MESSAGE_ID = "-1"  # answers a frame whose message id cannot be read


class Fault(Enum):
    """OCPP-J error kinds; their wire names differ between 1.6 and 2.x."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL = "InternalError"
    SECURITY = "SecurityError"
    FORMAT = "FormatViolation"
    PROPERTY_CONSTRAINT = "PropertyConstraintViolation"
    OCCURRENCE_CONSTRAINT = "OccurrenceConstraintViolation"
    TYPE_CONSTRAINT = "TypeConstraintViolation"
    GENERIC = "GenericError"
    RPC_FRAMEWORK = "RpcFrameworkError"  # 2.x: not a readable RPC frame
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"  # 2.x

    def code(self, version: str) -> str:
        if version == "1.6":
            return _V16_NAMES.get(self, self.value)
        return self.value


# 1.6 spells two codes differently and has no code for an unreadable frame or an unknown type.
_V16_NAMES = {
    Fault.FORMAT: "FormationViolation",
    Fault.OCCURRENCE_CONSTRAINT: "OccurenceConstraintViolation",
    Fault.RPC_FRAMEWORK: "ProtocolError",
    Fault.MESSAGE_TYPE_NOT_SUPPORTED: "ProtocolError",
}

# jsonschema keyword that failed -> the OCPP-J error it means
_SCHEMA_FAULTS = {
    "type": Fault.TYPE_CONSTRAINT,
    "maxLength": Fault.TYPE_CONSTRAINT,
    "minLength": Fault.TYPE_CONSTRAINT,
    "format": Fault.TYPE_CONSTRAINT,
    "pattern": Fault.TYPE_CONSTRAINT,
    "enum": Fault.PROPERTY_CONSTRAINT,
    "minimum": Fault.PROPERTY_CONSTRAINT,
    "maximum": Fault.PROPERTY_CONSTRAINT,
    "multipleOf": Fault.PROPERTY_CONSTRAINT,
    "required": Fault.OCCURRENCE_CONSTRAINT,
    "minItems": Fault.OCCURRENCE_CONSTRAINT,
    "maxItems": Fault.OCCURRENCE_CONSTRAINT,
    "additionalProperties": Fault.FORMAT,
}


class RpcError(Exception):
    def __init__(
        self, fault: Fault, description: str, message_id: str = UNKNOWN_MESSAGE_ID
    ) -> None:
        super().__init__(description)
        self.fault = fault
        self.description = description[:255]
        self.message_id = message_id

    def frame(self, version: str, message_id: str | None = None) -> str:
        return call_error_frame(
            message_id or self.message_id, self.fault.code(version), self.description
        )


@dataclass(frozen=True)
class Call:
    """A request; a SEND (2.1) is one that must never be answered, not even with an error."""

    message_id: str
    action: str
    payload: dict[str, Any]
    expects_reply: bool = True


@dataclass(frozen=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class CallError:
    message_id: str
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True)
class CallResultError(CallError):
    """2.1: the station could not accept our CALLRESULT."""


Frame = Call | CallResult | CallError  # a CallResultError is a CallError
_TYPES = (CALL, CALL_RESULT, CALL_ERROR)
_TYPES_V21 = (*_TYPES, CALL_RESULT_ERROR, SEND)


def _not_json(constant: str) -> Any:
    """Python's reader takes NaN and Infinity; JSON (RFC 8259) has neither."""
    raise ValueError(f"{constant} is not a JSON value")


# One decoder for every frame: `json.loads` with an option builds a new one per call.
_READ_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_not_json)


def parse_frame(text: str | bytes, version: str) -> Frame:
    """A frame as a message, or RpcError saying why it is not one.

    Numbers with a fraction are read as Decimal, so a meter value keeps every digit it was sent
    with. CALLRESULTERROR and SEND exist from OCPP 2.1 on.
    """
    unreadable = Fault.FORMAT if version == "1.6" else Fault.RPC_FRAMEWORK
    try:
        if isinstance(text, str):
            message = _READ_JSON.decode(text)
        else:
            # json.loads finds the bytes' encoding.
            message = json.loads(text, parse_float=Decimal, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as error:
        raise RpcError(unreadable, f"frame is not valid JSON: {error}") from None
    if not isinstance(message, list) or not message:
        raise RpcError(Fault.RPC_FRAMEWORK, "frame is not a JSON array [MessageTypeId, ...]")
    type_id = message[0]
    message_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    if message_id is None or not 0 < len(message_id) <= 36:
        raise RpcError(
            Fault.RPC_FRAMEWORK, "message id missing, not a string, or over 36 characters"
        )
    if type_id not in (_TYPES_V21 if version == "2.1" else _TYPES):
        raise RpcError(
            Fault.MESSAGE_TYPE_NOT_SUPPORTED, f"unknown message type {type_id!r}", message_id
        )
    frame = _frame(type_id, message_id, message)
    if frame is None:
        raise RpcError(
            Fault.RPC_FRAMEWORK, f"wrong elements for message type {type_id}", message_id
        )
    return frame


def _frame(type_id: int, message_id: str, message: list[Any]) -> Frame | None:
    if type_id in (CALL, SEND) and len(message) == 4:
        _, _, action, payload = message
        if not isinstance(action, str) or not isinstance(payload, dict):
            raise RpcError(Fault.FORMAT, "needs an action name and a payload object", message_id)
        return Call(message_id, action, payload, expects_reply=type_id == CALL)
    if type_id == CALL_RESULT and len(message) == 3 and isinstance(message[2], dict):
        return CallResult(message_id, message[2])
    if type_id in (CALL_ERROR, CALL_RESULT_ERROR) and len(message) == 5:
        details = message[4] if isinstance(message[4], dict) else {}
        error_class = CallError if type_id == CALL_ERROR else CallResultError
        return error_class(message_id, str(message[2]), str(message[3]), details)
    return None


_DRAFT_4 = "http://json-schema.org/draft-04/schema#"


@functools.cache
def compiled_request_schema(version: str, action: str) -> Callable[[Any], Any]:
    """The action's request schema as a function, many times faster than `jsonschema`.

    It judges as the `ocpp` package's validator does: by draft 4's rules whatever the schema
    says (so 1.0 is not an integer), without checking formats or filling in defaults.
    """
    schema = get_validator(CALL, action, version).schema | {"$schema": _DRAFT_4}
    return fastjsonschema.compile(schema, use_default=False, use_formats=False)  # type: ignore[no-any-return]


def validate_call(version: str, call: Call) -> None:
    """Checks a CALL's payload against the version's schema for its action.

    Valid payloads, nearly all of them, pass the compiled schema. Any other is judged by the
    `ocpp` package's validator, whose error decides the fault; if it finds none, the payload
    passes.
    """
    try:
        compiled_request_schema(version, call.action)(call.payload)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    validator = get_validator(CALL, call.action, version)
    try:
        validator.validate(call.payload)
    except SchemaError as error:
        fault = _SCHEMA_FAULTS.get(str(error.validator), Fault.FORMAT)
        where = "/".join(str(p) for p in error.absolute_path) or "payload"
        raise RpcError(fault, f"{where}: {error.message}", call.message_id) from None


def schema_problem(version: str, type_id: int, action: str, payload: dict[str, Any]) -> str | None:
    """What is wrong with a payload we send (CALL) or a station's answer (CALL_RESULT), if any.

    Outbound schemas are loaded with Decimal numbers, so a limit like 7.3 meets `multipleOf`.
    """
    validator = get_validator(type_id, action, version, parse_float=Decimal)
    error = next(iter(validator.iter_errors(payload)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    return f"{where}: {error.message}"


def _number(value: object) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# Made once: `json.dumps` with an option builds a new encoder per call, a quarter of the cost
# of an answer's frame.
_WRITE_JSON = json.JSONEncoder(separators=(",", ":"))
_WRITE_JSON_NUMBERS = json.JSONEncoder(separators=(",", ":"), default=_number)


def call_frame(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return _WRITE_JSON_NUMBERS.encode([CALL, message_id, action, payload])


def call_result_frame(message_id: str, payload: dict[str, Any]) -> str:
    return _WRITE_JSON.encode([CALL_RESULT, message_id, payload])


def call_error_frame(message_id: str, code: str, description: str) -> str:
    return _WRITE_JSON.encode([CALL_ERROR, message_id, code, description, {}])
