"""API tokens and roles: who may read what, and who may command stations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from strawberry.permission import BasePermission
from strawberry.types import Info

from api.ports import Backend, Role

NO_TOKEN = "an API token is required: send `Authorization: Bearer <token>` (csms token create)"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


def bearer(value: Any) -> str | None:
    if isinstance(value, str) and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


async def principal_from(backend: Backend, authorization: Any) -> Principal | None:
    secret = bearer(authorization)
    found = await backend.authenticate(secret) if secret else None
    return Principal(found[0], Role(found[1])) if found else None


async def principal(info: Info) -> Principal | None:
    """The caller, from the HTTP header or the WebSocket's connection_init payload; cached."""
    context = info.context
    if "principal" not in context:
        request: HTTPConnection = context["request"]
        authorization = request.headers.get("authorization")
        params = context.get("connection_params") or {}
        if authorization is None and isinstance(params, dict):
            authorization = params.get("Authorization") or params.get("authorization")
        context["principal"] = await principal_from(context["backend"], authorization)
    found: Principal | None = context["principal"]
    return found


def allow(*roles: Role) -> type[BasePermission]:
    """A permission for the fields these roles may use."""
    names = ", ".join(role.value for role in roles)

    class Allowed(BasePermission):
        message = NO_TOKEN

        async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
            caller = await principal(info)
            if caller is None:
                self.message = NO_TOKEN
                return False
            if caller.role not in roles:
                self.message = f"the {caller.role.value} role may not do this; it needs: {names}"
                return False
            return True

    Allowed.__name__ = f"Allow{''.join(role.value.title() for role in roles)}"
    return Allowed


READERS = allow(Role.OPERATOR, Role.AUDITOR)
SESSION_READERS = allow(Role.OPERATOR, Role.AUDITOR, Role.BILLING)
OPERATORS = allow(Role.OPERATOR)


async def requester(info: Info) -> str:
    """How the caller is named in the events it causes."""
    caller = await principal(info)
    assert caller is not None  # the permission ran first
    return f"{caller.role.value}:{caller.name}"
