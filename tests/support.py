"""Test helpers: a real `csms serve` process, real OCPP clients, GraphQL over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import websockets
from ocpp.v16 import ChargePoint as ChargePoint16
from websockets.typing import Subprotocol

from domain.ids import station_uuid

T = TypeVar("T")


def offer(*names: str) -> list[Subprotocol]:
    """The WebSocket subprotocols a client offers, typed as websockets wants them."""
    return [Subprotocol(name) for name in names]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """`csms serve` in a child process, as a user runs it."""

    def __init__(self, log_path: Path, database_url: str | None, *extra: str) -> None:
        self.log_path = log_path
        self.database_url = database_url
        self.extra = extra
        self.ocpp_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._tokens: dict[str, str] = {}

    def start(self, timeout: float = 60, ready: bool = True) -> ServerProcess:
        """Starts the server and, if `ready`, waits until it answers."""
        args = [
            sys.executable,
            "-m",
            "adapters.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--ocpp-port",
            str(self.ocpp_port),
            "--http-port",
            str(self.http_port),
            *self.extra,
        ]
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if self.database_url:
            args += ["--database-url", self.database_url]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        if not ready:
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.http_url("/health"), timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"server not ready:\n{self.log_path.read_text()[-4000:]}")

    def token(self, role: str = "operator") -> str:
        """An API token of that role, made with `csms token create` as a user makes one."""
        if role not in self._tokens:
            self._tokens[role] = self.create_token(role)
        return self._tokens[role]

    def create_token(self, role: str) -> str:
        done = self.cli("token", "create", "--role", role)
        assert done.returncode == 0, done.stderr
        assert "shown once" in done.stderr
        secret = done.stdout.strip()  # alone, as T=$(csms token create ...) takes it
        assert secret.startswith("csms_") and len(secret.split()) == 1, done.stdout
        return secret

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A `csms` command on this server's database, as a user would run it beside it."""
        where = ["--database-url", self.database_url] if self.database_url else []
        if "--data-dir" in self.extra:
            where += ["--data-dir", self.extra[self.extra.index("--data-dir") + 1]]
        return subprocess.run(
            [sys.executable, "-m", "adapters.cli", *args, *where],
            capture_output=True,
            text=True,
            timeout=300,
            env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        )

    def http_url(self, path: str = "/graphql") -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def ocpp_url(self, station_id: str) -> str:
        return f"ws://127.0.0.1:{self.ocpp_port}/{station_id}"

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text()


async def graphql_response(
    server: ServerProcess, query: str, token: str | None, **variables: Any
) -> dict[str, Any]:
    """The whole GraphQL response body, errors included."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.http_url(),
            json={"query": query, "variables": variables},
            headers=headers,
            timeout=60,
        )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def graphql(
    server: ServerProcess, query: str, role: str = "operator", **variables: Any
) -> dict[str, Any]:
    """The data of a query sent with a token of the role; fails on any error."""
    body = await graphql_response(server, query, server.token(role), **variables)
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def eventually(
    probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float = 15
) -> T:
    """Polls until `check(probe())` holds (projections catch up asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {value!r}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def station16(
    server: ServerProcess, station_id: str, url: str | None = None
) -> AsyncIterator[ChargePoint16]:
    """A real OCPP 1.6J charge point (the `ocpp` package) connected to the server (at `url`, if
    given: with credentials, say)."""
    url = url or server.ocpp_url(station_id)
    async with websockets.connect(url, subprotocols=offer("ocpp1.6")) as ws:
        charge_point = ChargePoint16(station_id, ws, response_timeout=15)
        task = asyncio.create_task(charge_point.start())
        try:
            yield charge_point
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def stored_events(database_url: str, station_id: str, name: str) -> list[dict[str, Any]]:
    """The station's stored events of one type, oldest first, as their JSON state."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT state FROM csms_events WHERE originator_id = %s AND topic LIKE %s "
            "ORDER BY originator_version",
            (station_uuid(station_id), f"%.{name}"),
        )
        return [json.loads(bytes(row[0])) for row in await cursor.fetchall()]


# Every projection's tables, to compare a view built one way with one built another.
PROJECTION_TABLES = (
    "station_status", "connector_status", "transactions", "station_variables",
    "remote_commands", "id_tokens", "billing_tariffs", "billing_transactions",
    "billing_samples", "charging_sessions", "event_log", "event_log_aggregates",
)  # fmt: skip


def projection_tables(database_url: str, schema: str = "public") -> dict[str, list[str]]:
    """Each projection table's rows, sorted, as text."""
    with psycopg.connect(database_url) as conn:
        return {
            table: sorted(map(repr, conn.execute(f'SELECT * FROM "{schema}"."{table}"')))
            for table in PROJECTION_TABLES
        }
