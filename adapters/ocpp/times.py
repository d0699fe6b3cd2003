"""OCPP timestamps: parsed strictly (the schemas do not check them) and written in UTC with Z."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.ocpp.rpc import Fault, RpcError


def parse_time(text: str, field: str, message_id: str) -> datetime:
    """An aware datetime; a time without an offset is taken as UTC, as stations mean it."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise RpcError(
            Fault.TYPE_CONSTRAINT, f"{field}: {text!r} is not an ISO 8601 date-time", message_id
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)
