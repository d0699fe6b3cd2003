"""The ASGI application: GraphQL at /graphql (GraphiQL in a browser, subscriptions over
WebSocket), station uploads at /uploads/<command>, downloads at /files/<file>, /health, and
/metrics for Prometheus.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote
from uuid import UUID

import strawberry
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.tools import merge_types

from api.audit import AuditQuery
from api.auth import principal_from
from api.operations import Mutation, Subscription, TariffMutation
from api.ports import Backend, Role
from api.schema import Query
from api.stations import StationMutation

log = logging.getLogger(__name__)

schema = strawberry.Schema(
    query=merge_types("Query", (Query, AuditQuery)),
    mutation=merge_types("Mutation", (Mutation, TariffMutation, StationMutation)),
    subscription=Subscription,
)


class CsmsGraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, pool: AsyncConnectionPool, backend: Backend) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            allow_queries_via_get=False,
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
        )
        self._pool = pool
        self._backend = backend

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> dict[str, Any]:
        return {
            "request": request,
            "response": response,
            "pool": self._pool,
            "backend": self._backend,
        }


def create_app(pool: AsyncConnectionPool, backend: Backend) -> Starlette:
    graphql = CsmsGraphQL(pool, backend)

    async def health(request: Request) -> JSONResponse:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        body, content_type = await backend.metrics()
        return Response(body, headers={"Content-Type": content_type})

    async def upload(request: Request) -> Response:
        """Where a station sends the file a FetchDiagnostics command asked for."""
        try:
            command_id = UUID(request.path_params["command"])
        except ValueError:
            return PlainTextResponse("not an upload location\n", status_code=404)
        received = await _received_file(request, backend.max_upload_bytes)
        if isinstance(received, Response):
            return received
        file_name, content_type, content = received
        stored = await backend.store_upload(command_id, file_name, content_type, content)
        if stored is None:
            return PlainTextResponse("no upload was requested here\n", status_code=404)
        log.info("%s uploaded %s (%d bytes)", stored.station_id, file_name, len(content))
        return JSONResponse({"fileId": str(stored.file_id), "size": stored.size}, status_code=201)

    async def download(request: Request) -> Response:
        caller = await principal_from(backend, request.headers.get("authorization"))
        if caller is None:
            return PlainTextResponse("an API token is required\n", status_code=401)
        if caller.role not in (Role.OPERATOR, Role.AUDITOR):
            return PlainTextResponse("operator or auditor role required\n", status_code=403)
        try:
            found = await backend.download(UUID(request.path_params["file"]))
        except ValueError:
            found = None
        if found is None:
            return PlainTextResponse("no such file\n", status_code=404)
        info, content = found
        disposition = f"attachment; filename*=UTF-8''{quote(info.file_name)}"
        return Response(
            content,
            media_type=info.content_type,
            headers={"Content-Disposition": disposition, "X-Content-SHA256": info.sha256},
        )

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/uploads/{command}", upload, methods=["PUT", "POST"]),
            Route("/uploads/{command}/{name}", upload, methods=["PUT", "POST"]),
            Route("/files/{file}", download),
            Route("/health", health),
            Route("/metrics", metrics),
        ]
    )


async def _received_file(request: Request, limit: int) -> tuple[str, str, bytes] | Response:
    """The file of a multipart form (its first file part) or of a raw body."""
    too_large = PlainTextResponse(f"larger than {limit} bytes\n", status_code=413)
    if int(request.headers.get("content-length") or 0) > limit:
        return too_large
    content_type = request.headers.get("content-type", "application/octet-stream")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_part_size=limit) as form:
            for value in form.values():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    kind = value.content_type or "application/octet-stream"
                    return value.filename or "upload", kind, data
        return PlainTextResponse("the form holds no file\n", status_code=400)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return too_large
    name = request.path_params.get("name") or "upload"
    return name, content_type, bytes(body)
