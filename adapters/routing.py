"""Remote commands, from whichever node the operator asked to the node holding the station.

The asking node records `RemoteCommandRequested` and notifies every node. The node holding the
station's connection claims it (`Sent`), calls the station, records its answer or why there was
none, and notifies. Both write to the command's own aggregate, so if no node claims it in time
and the asking node records "offline", a late claim loses, and the station is never called.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any
from uuid import UUID

from adapters.notifications import Notifications
from adapters.ocpp import rpc
from adapters.ocpp.gateway import ConnectionLost, OcppGateway, StationOffline
from adapters.ocpp.operations import InvalidRequest, Unsupported, answer_status
from adapters.ocpp.rpc import CallError
from adapters.ocpp.times import now
from adapters.ocpp.translator import Submit
from domain.operator_commands import (
    MarkRemoteCommandSent,
    RequestRemoteCommand,
    SettleRemoteCommand,
)
from domain.remote import Failure, Operation, RemoteCommand

log = logging.getLogger(__name__)

REQUESTED = "csms_command_requested"
SENT = "csms_command_sent"
SETTLED = "csms_command_settled"
CHANNELS = (REQUESTED, SENT, SETTLED)
# How long the asking node waits for some node to claim a command before calling it offline.
CLAIM_WINDOW = 2.0


class CommandRouter:
    def __init__(
        self,
        gateway: OcppGateway,
        submit: Submit,
        read_command: Callable[[UUID], RemoteCommand],
        notifications: Notifications,
        node: str,
        timeout: float = 30.0,
    ) -> None:
        self._gateway = gateway
        self._submit = submit
        self._read_command = read_command
        self._notifications = notifications
        self._node = node
        self.timeout = timeout
        self._claimed: dict[UUID, asyncio.Future[None]] = {}
        self._settled: dict[UUID, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        notifications.on(REQUESTED, self._on_requested)
        notifications.on(SENT, lambda payload: self._resolve(self._claimed, UUID(payload)))
        notifications.on(SETTLED, self._on_settled)

    async def execute(
        self,
        station_id: str,
        operation: Operation,
        arguments: dict[str, Any],
        requested_by: str,
        command_id: UUID,
    ) -> RemoteCommand:
        """Records the request, has it delivered, and returns the settled command."""
        await self._submit(
            RequestRemoteCommand(command_id, station_id, operation, arguments, requested_by, now())
        )
        loop = asyncio.get_running_loop()
        claimed = self._claimed[command_id] = loop.create_future()
        settled = self._settled[command_id] = loop.create_future()
        try:
            if self._gateway.translator_of(station_id) is not None:
                self._spawn(self._deliver(command_id))
            else:
                await self._notifications.notify(REQUESTED, f"{command_id} {station_id}")
            if not await _within(claimed, CLAIM_WINDOW):
                offline = SettleRemoteCommand(
                    command_id,
                    None,
                    None,
                    Failure.STATION_OFFLINE,
                    f"{station_id} is not connected to any node",
                    now(),
                    only_if_unsent=True,
                )
                if await self._record(offline):
                    return await self.read(command_id)
            if not await _within(settled, self.timeout + CLAIM_WINDOW):
                await self._settle(command_id, Failure.TIMEOUT, "the node holding it went silent")
            return await self.read(command_id)
        finally:
            del self._claimed[command_id], self._settled[command_id]

    async def read(self, command_id: UUID) -> RemoteCommand:
        return await asyncio.to_thread(self._read_command, command_id)

    def _on_requested(self, payload: str) -> None:
        command_id, station_id = payload.split(" ", 1)
        if self._gateway.translator_of(station_id) is not None:
            self._spawn(self._deliver(UUID(command_id)))

    def _on_settled(self, payload: str) -> None:
        command_id = UUID(payload)
        self._resolve(self._claimed, command_id)
        self._resolve(self._settled, command_id)

    @staticmethod
    def _resolve(futures: dict[UUID, asyncio.Future[None]], command_id: UUID) -> None:
        future = futures.get(command_id)
        if future is not None and not future.done():
            future.set_result(None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, command_id: UUID) -> None:
        try:
            await self._call_station(await self.read(command_id))
        except Exception:
            log.exception("delivering remote command %s failed", command_id)
            with contextlib.suppress(Exception):
                await self._settle(command_id, Failure.CONNECTION_LOST, "internal error")

    async def _call_station(self, command: RemoteCommand) -> None:
        translator = self._gateway.translator_of(command.station_id)
        if command.settled or translator is None:
            return  # gone meanwhile: the asking node reports it offline
        try:
            outbound = translator.encode(
                command.operation, command.arguments, command.request_number
            )
        except Unsupported as error:
            await self._settle(command.id, Failure.NOT_SUPPORTED, str(error))
            return
        except InvalidRequest as error:
            await self._settle(command.id, Failure.INVALID_REQUEST, str(error))
            return
        message_id = str(uuid.uuid4())
        claim = MarkRemoteCommandSent(
            command.id, self._node, outbound.action, message_id, outbound.payload, now()
        )
        if not await self._submit(claim):
            return
        await self._signal(SENT, command.id)
        try:
            answer = await self._gateway.call(
                command.station_id, message_id, outbound.action, outbound.payload, self.timeout
            )
        except TimeoutError:
            await self._settle(command.id, Failure.TIMEOUT, f"no answer within {self.timeout:g} s")
            return
        except (StationOffline, ConnectionLost) as error:
            await self._settle(command.id, Failure.CONNECTION_LOST, f"connection closed: {error}")
            return
        if isinstance(answer, CallError):
            detail = f"{answer.code}: {answer.description}"
            await self._settle(command.id, Failure.CALL_ERROR, detail)
            return
        version = translator.version
        problem = rpc.schema_problem(version, rpc.CALL_RESULT, outbound.action, answer.payload)
        if problem is not None:
            await self._settle(command.id, Failure.INVALID_ANSWER, f"{problem} in {answer.payload}")
            return
        status = answer_status(answer.payload)
        await self._record(SettleRemoteCommand(command.id, status, answer.payload, None, "", now()))

    async def _settle(self, command_id: UUID, failure: Failure, detail: str) -> None:
        await self._record(
            SettleRemoteCommand(command_id, None, None, failure, detail[:500], now())
        )

    async def _record(self, outcome: SettleRemoteCommand) -> bool:
        """True if this outcome settled the command (no other had before)."""
        settled: bool = await self._submit(outcome)
        if settled:
            await self._signal(SETTLED, outcome.command_id)
        return settled

    async def _signal(self, channel: str, command_id: UUID) -> None:
        if channel == SENT:
            self._resolve(self._claimed, command_id)
        else:
            self._on_settled(str(command_id))
        await self._notifications.notify(channel, str(command_id))


async def _within(future: asyncio.Future[None], seconds: float) -> bool:
    """True if the future is done within the time (it is not cancelled when time runs out)."""
    try:
        await asyncio.wait_for(asyncio.shield(future), seconds)
    except TimeoutError:
        return False
    return True
