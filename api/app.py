"""The ASGI application: GraphQL at /graphql (GraphiQL in a browser), health at /health."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from api.schema import schema


class CsmsGraphQL(GraphQL[dict[str, Any], None]):
    def __init__(self, pool: AsyncConnectionPool) -> None:
        super().__init__(schema, graphql_ide="graphiql", allow_queries_via_get=False)
        self._pool = pool

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None
    ) -> dict[str, Any]:
        return {"request": request, "response": response, "pool": self._pool}


def create_app(pool: AsyncConnectionPool) -> Starlette:
    graphql = CsmsGraphQL(pool)

    async def health(request: Request) -> JSONResponse:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/health", health),
        ]
    )
