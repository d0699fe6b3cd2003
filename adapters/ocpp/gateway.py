"""The OCPP-J WebSocket gateway: one endpoint for every station, `ws://host:port/<station-id>`.

Each connection reads frames as they come; CALLs are answered in order by the translator of the
negotiated protocol, each answer sent only after the events it caused are committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.headers import build_www_authenticate_basic
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from adapters import metrics
from adapters.admission import Admission, admit_all
from adapters.ocpp import rpc
from adapters.ocpp.rpc import Call, CallError, CallResult, CallResultError, Fault, RpcError
from adapters.ocpp.times import now
from adapters.ocpp.translator import Inbound, Submit, Translator
from adapters.station_credentials import IDENTITY, Verdict
from adapters.tls import common_name
from domain import commands as cmd

log = logging.getLogger(__name__)

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_REPLACED = 4000
CLOSE_POLICY_VIOLATION = 1008
REFUSALS_LOGGED_EVERY = 5.0  # seconds: a storm's refusals are summed, not logged one by one
BUSY = "the event loop is too far behind (--max-loop-lag)"

# Whether a station may connect, given its identity, its Authorization header, and whether it
# presented a client certificate of its own (security profile 3).
Authenticate = Callable[[str, str | None, bool], Verdict]


def admit_everyone(station_id: str, authorization: str | None, certified: bool) -> Verdict:
    return Verdict.ADMITTED


def station_identity(path: str) -> str | None:
    """The last path segment, percent-decoded, if it is a valid station identity."""
    segment = unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    return segment if IDENTITY.match(segment) else None


class FrameSink(Protocol):
    def __call__(
        self,
        station_id: str,
        direction: str,
        text: str | bytes,
        message_id: str | None = None,
        action: str | None = None,
    ) -> None: ...


def _forget(
    station_id: str,
    direction: str,
    text: str | bytes,
    message_id: str | None = None,
    action: str | None = None,
) -> None:
    """No journal."""


def _come_back(connection: ServerConnection, retry_after: int, why: str) -> Response:
    """503 with Retry-After: the station may try again then."""
    response = connection.respond(
        HTTPStatus.SERVICE_UNAVAILABLE, f"{why}; connect again after Retry-After seconds.\n"
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


class RefusalLog:
    """Refused connections, logged at once and then summed over a few seconds, so that a storm
    or someone trying passwords fills no log."""

    def __init__(self) -> None:
        self._since: Counter[str] = Counter()
        self._last: dict[str, str] = {}
        self._logged_at = 0.0

    def note(self, station_id: str, reason: str, counted_as: str) -> None:
        """Notes a refusal; `counted_as` names its kind among a few, for the metrics."""
        metrics.REFUSED.labels(counted_as).inc()
        self._since[reason] += 1
        self._last[reason] = station_id
        if time.monotonic() - self._logged_at < REFUSALS_LOGGED_EVERY:
            return
        log.warning(
            "refused %d connection(s) since the last such warning: %s",
            self._since.total(),
            "; ".join(
                f"{count} as {reason} (the last: {self._last[reason]!r})"
                for reason, count in self._since.items()
            ),
        )
        self._since.clear()
        self._last.clear()
        self._logged_at = time.monotonic()


class StationOffline(Exception):
    """The station has no connection on this node."""


class ConnectionLost(Exception):
    """The connection closed before the station answered."""


@dataclass
class StationConnection:
    station_id: str
    connection_id: str
    websocket: ServerConnection
    translator: Translator
    # Requests to answer, in order, each with when its frame was read (time.perf_counter()).
    calls: asyncio.Queue[tuple[Call, float] | None] = field(default_factory=asyncio.Queue)
    # Our calls to the station, by message id; OCPP-J allows one in flight at a time.
    awaiting: dict[str, asyncio.Future[CallResult | CallError]] = field(default_factory=dict)
    sending: asyncio.Lock = field(default_factory=asyncio.Lock)


class OcppGateway:
    def __init__(
        self,
        translators: Sequence[Translator],
        submit: Submit,
        node: str,
        max_frame_bytes: int = 1 << 20,
        journal: FrameSink | None = None,
        admission: Admission = admit_all,
        authenticate: Authenticate = admit_everyone,
    ) -> None:
        # Newest first: when a station offers several protocols, the newest we speak wins.
        self._translators = {t.subprotocol: t for t in translators}
        self._submit = submit
        self._node = node
        self._max_frame_bytes = max_frame_bytes
        self._journal = journal or _forget
        # Seconds a connecting station is told to wait (HTTP 503), or None to let it in.
        self._admission = admission
        self._authenticate = authenticate
        self._refusals = RefusalLog()
        # By OCPP version, made once: their children are looked up once per action.
        self._answer_metrics = {t.version: metrics.AnswerMetrics(t.version) for t in translators}
        self._closing: set[asyncio.Task[None]] = set()
        self.connections: dict[str, StationConnection] = {}

    async def start(
        self, host: str, port: int, share_port: bool = False, tls: ssl.SSLContext | None = None
    ) -> Server:
        """Listens for stations; with `share_port`, beside other processes on the same port."""
        return await serve(
            self._serve_connection,
            host,
            port,
            reuse_port=share_port,
            ssl=tls,
            backlog=4096,  # a boot storm connects thousands at once
            subprotocols=[Subprotocol(name) for name in self._translators],
            select_subprotocol=self._select_subprotocol,
            process_request=self._check_request,
            max_size=self._max_frame_bytes,
            compression=None,  # per-message deflate costs ~40 KiB per idle connection
            ping_interval=60,
            ping_timeout=60,
        )

    def _select_subprotocol(
        self, connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        for subprotocol in self._translators:
            if subprotocol in offered:
                return Subprotocol(subprotocol)
        return None  # handshake completes without one; the connection is then closed

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuses at the handshake: a path without an identity (404), a busy server (503),
        another station's certificate (403), an unknown station (404) or a wrong or missing
        password (401)."""
        station_id = station_identity(request.path)
        if station_id is None:
            log.warning("refused connection to %r: not a valid station identity", request.path)
            metrics.REFUSED.labels("invalid identity").inc()
            return connection.respond(
                HTTPStatus.NOT_FOUND,
                "The URL must end with a station identity of 1-48 printable characters.\n",
            )
        retry_after = self._admission()
        if retry_after is not None:
            self._refusals.note(station_id, BUSY, "busy")
            return _come_back(connection, retry_after, "The server is busy")
        return self._refuse_unauthenticated(connection, request, station_id)

    def _refuse_unauthenticated(
        self, connection: ServerConnection, request: Request, station_id: str
    ) -> Response | None:
        """The refusal of a station that is not who it says, or is unknown; else None."""
        certified = common_name(connection.transport.get_extra_info("peercert"))
        if certified is not None and certified != station_id:
            self._refusals.note(station_id, f"a certificate of {certified!r}", "certificate")
            return connection.respond(
                HTTPStatus.FORBIDDEN, "The client certificate is not this station's.\n"
            )
        verdict = self._authenticate(
            station_id, request.headers.get("Authorization"), certified is not None
        )
        if verdict is Verdict.ADMITTED:
            return None
        self._refusals.note(station_id, verdict.value, verdict.value)
        if verdict is Verdict.UNKNOWN:
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charging station.\n")
        response = connection.respond(
            HTTPStatus.UNAUTHORIZED,
            "Authenticate with the station identity as user name and its password.\n",
        )
        response.headers["WWW-Authenticate"] = build_www_authenticate_basic("OCPP")
        return response

    async def _serve_connection(self, websocket: ServerConnection) -> None:
        station_id = station_identity(websocket.request.path if websocket.request else "")
        assert station_id is not None  # checked during the handshake
        translator = self._translators.get(websocket.subprotocol or "")
        if translator is None:
            log.warning("%s: no supported OCPP subprotocol offered; closing", station_id)
            await websocket.close(CLOSE_PROTOCOL_ERROR, "no supported OCPP subprotocol")
            return
        connection = StationConnection(station_id, uuid.uuid4().hex, websocket, translator)
        worker: asyncio.Task[None] | None = None
        reason = "closed"
        metrics.CONNECTIONS.inc()
        try:
            await self._register(connection)  # if the store refuses, the handler ends here
            worker = asyncio.create_task(self._answer_calls(connection))
            await self._read_frames(connection)
        except ConnectionClosed as closed:
            reason = f"closed ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
        finally:
            metrics.CONNECTIONS.dec()
            connection.calls.put_nowait(None)
            for waiting in connection.awaiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionLost(reason))
            if worker is not None:
                with contextlib.suppress(Exception):
                    await worker
            await self._unregister(connection, reason)

    async def _register(self, connection: StationConnection) -> None:
        previous = self.connections.get(connection.station_id)
        self.connections[connection.station_id] = connection
        remote = connection.websocket.remote_address
        await self._submit(
            cmd.ConnectStation(
                station_id=connection.station_id,
                connection_id=connection.connection_id,
                protocol=connection.translator.subprotocol,
                node=self._node,
                remote_address=f"{remote[0]}:{remote[1]}" if remote else None,
                received_at=now(),
            )
        )
        log.info("%s: connected over %s", connection.station_id, connection.translator.subprotocol)
        if previous is not None:
            log.info("%s: a new connection replaces the previous one", connection.station_id)
            await previous.websocket.close(CLOSE_REPLACED, "replaced by a new connection")

    async def _unregister(self, connection: StationConnection, reason: str) -> None:
        if self.connections.get(connection.station_id) is connection:
            del self.connections[connection.station_id]
        with contextlib.suppress(Exception):
            await self._submit(
                cmd.DisconnectStation(
                    connection.station_id, connection.connection_id, reason, now()
                )
            )
        log.info("%s: disconnected, %s", connection.station_id, reason)

    async def _read_frames(self, connection: StationConnection) -> None:
        version = connection.translator.version
        station_id = connection.station_id
        async for text in connection.websocket:
            try:
                frame = rpc.parse_frame(text, version)
            except RpcError as error:
                log.warning("%s: bad frame %.200r: %s", station_id, text, error)
                metrics.BAD_FRAMES.labels(version).inc()
                self._journal(station_id, "in", text, error.message_id)
                refusal = error.frame(version)
                self._journal(station_id, "out", refusal, error.message_id)
                await connection.websocket.send(refusal)
                continue
            action = frame.action if isinstance(frame, Call) else None
            self._journal(station_id, "in", text, frame.message_id, action)
            if isinstance(frame, Call):
                connection.calls.put_nowait((frame, time.perf_counter()))
            elif isinstance(frame, CallResultError):
                log.warning(
                    "%s: the station refused our answer to %s: %s %s",
                    connection.station_id,
                    frame.message_id,
                    frame.code,
                    frame.description,
                )
            elif (waiting := connection.awaiting.get(frame.message_id)) and not waiting.done():
                waiting.set_result(frame)
            else:
                log.info(
                    "%s: %s %s answers no call of ours (late, after a timeout?)",
                    connection.station_id,
                    type(frame).__name__,
                    frame.message_id,
                )

    async def call(
        self,
        station_id: str,
        message_id: str,
        action: str,
        payload: dict[str, Any],
        answer_within: float,
    ) -> CallResult | CallError:
        """Sends a CALL to a station connected here and awaits its answer.

        Raises StationOffline, ConnectionLost, or TimeoutError (waiting for an earlier call of
        ours to be answered counts against the timeout).
        """
        connection = self.connections.get(station_id)
        if connection is None:
            raise StationOffline(station_id)
        answer: asyncio.Future[CallResult | CallError] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(answer_within), connection.sending:
            connection.awaiting[message_id] = answer
            text = rpc.call_frame(message_id, action, payload)
            self._journal(station_id, "out", text, message_id, action)
            try:
                await connection.websocket.send(text)
                return await answer
            except ConnectionClosed as closed:
                raise ConnectionLost(str(closed)) from None
            finally:
                del connection.awaiting[message_id]

    def reauthenticate(self, station_id: str) -> None:
        """Closes the station's connection here, if any: its credentials changed, so it must
        connect, and authenticate, again."""
        connection = self.connections.get(station_id)
        if connection is None:
            return
        log.info("%s: its credentials changed; closing its connection", station_id)
        closing = asyncio.create_task(
            connection.websocket.close(CLOSE_POLICY_VIOLATION, "credentials changed")
        )
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def translator_of(self, station_id: str) -> Translator | None:
        connection = self.connections.get(station_id)
        return connection.translator if connection else None

    async def _answer_calls(self, connection: StationConnection) -> None:
        translator = connection.translator
        counted = self._answer_metrics[translator.version]
        while (queued := await connection.calls.get()) is not None:
            call, read_at = queued
            reply, refused = await self._answer(connection, call)
            # Any action a station names would make a series of its own: unknown ones share one.
            action = call.action if call.action in translator.known_actions else "unknown"
            if not call.expects_reply:
                counted.sent(action)  # a SEND is never answered, not even with an error
                continue
            self._journal(connection.station_id, "out", reply, call.message_id, call.action)
            try:
                await connection.websocket.send(reply)
            except ConnectionClosed:
                return
            counted.answered(action, refused, time.perf_counter() - read_at)

    async def _answer(self, connection: StationConnection, call: Call) -> tuple[str, bool]:
        """The answer's frame, and whether it is a CallError."""
        version = connection.translator.version
        inbound = Inbound(connection.station_id, call, now())
        try:
            payload: dict[str, Any] = await connection.translator.answer(inbound, self._submit)
        except RpcError as error:
            log.warning(
                "%s: %s %s refused: %s %s",
                connection.station_id,
                call.action,
                call.message_id,
                error.fault.code(version),
                error.description,
            )
            return error.frame(version, call.message_id), True
        except Exception:
            log.exception("%s: %s %s failed", connection.station_id, call.action, call.message_id)
            failed = rpc.call_error_frame(
                call.message_id, Fault.INTERNAL.code(version), "the CSMS could not record this"
            )
            return failed, True
        return rpc.call_result_frame(call.message_id, payload), False
