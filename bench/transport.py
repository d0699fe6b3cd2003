"""What the WebSocket layer costs a server per message: websockets' asyncio server against
websockets' sans-I/O protocol under a plain asyncio Protocol.

Each server echoes every text message the way the gateway answers a call: the reading side
hands the message to the connection's answering task, which waits for a commit (here a future
settled on the loop's next turn) and then sends the answer. Everything else the gateway does is
left out, so the difference between the two is what websockets' connection (its receive queue,
its send context, its flow control) adds. Each server runs in a process of its own, loaded by
the load generator's own lines (bench.wire) at a fixed rate, and is measured by the CPU time it
used per message, read from /proc in clock ticks (10 ms): a run must hold thousands of messages
for the figure to mean anything. Rounds alternate the two.

    python -m bench.transport --stations 500 --rate 1500 --duration 15 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from bench import usage
from bench.wire import Line, Message, open_line, send_pending

KINDS = ("websockets", "sans-I/O")
ANSWER_WITHIN = 10.0  # seconds past the run's end: a server that has not answered by then is broken
MESSAGE = json.dumps(
    [2, "b1f4c7de-0c4e-4c0e-9d53-4b1e4b0e2f01", "MeterValues", {
        "connectorId": 1, "transactionId": 7, "meterValue": [{
            "timestamp": "2026-12-07T18:00:00.000Z",
            "sampledValue": [{"value": "1234.5", "measurand": "Energy.Active.Import.Register"}],
        }],
    }],
)  # fmt: skip


async def _committed() -> None:
    """What the answering task waits for in the gateway: the writer settling a future."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


async def _answer(queue: asyncio.Queue[str | None], send: Callable[[str], Awaitable[None]]) -> None:
    while (text := await queue.get()) is not None:
        await _committed()
        await send(text)


async def _websockets_connection(websocket: ServerConnection) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    answering = asyncio.create_task(_answer(queue, websocket.send))
    try:
        async for text in websocket:
            queue.put_nowait(str(text))
    finally:
        queue.put_nowait(None)
        await answering


class _SansIoConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self._ws = ServerProtocol(max_size=1 << 20)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._message = Message()
        self._transport: asyncio.Transport | None = None
        self._answering: asyncio.Task[None] | None = None  # held: asyncio keeps tasks weakly

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Request):
                self._ws.send_response(self._ws.accept(event))
                self._answering = asyncio.ensure_future(_answer(self._queue, self._send))
            elif isinstance(event, Frame) and (text := self._message.add(event)) is not None:
                self._queue.put_nowait(text)
        self._flush()

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._flush()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._queue.put_nowait(None)

    async def _send(self, text: str) -> None:
        if self._ws.state is OPEN:
            self._ws.send_text(text.encode())
            self._flush()

    def _flush(self) -> None:
        assert self._transport is not None
        send_pending(self._ws, self._transport)


async def _listen(kind: str, sock: socket.socket, ready: Event) -> None:
    """Serves on `sock` until the process is terminated."""
    forever: Callable[[], Awaitable[None]]
    if kind == "websockets":
        websockets_server = await serve(
            _websockets_connection, sock=sock, compression=None, ping_interval=None
        )
        forever = websockets_server.serve_forever
    else:
        plain = await asyncio.get_running_loop().create_server(_SansIoConnection, sock=sock)
        forever = plain.serve_forever
    ready.set()
    await forever()


def _serve(kind: str, sock: socket.socket, ready: Event) -> None:
    asyncio.run(_listen(kind, sock, ready))


@dataclass(frozen=True)
class Measured:
    kind: str
    messages: int
    seconds: float
    server_cpu: float  # seconds

    @property
    def us_a_message(self) -> float:
        return self.server_cpu / self.messages * 1e6 if self.messages else 0.0

    def line(self) -> str:
        return (
            f"{self.kind:>10}: {self.messages / self.seconds:,.0f} msg/s, server "
            f"{self.server_cpu / self.seconds:.3f} cores, {self.us_a_message:.1f} us a message"
        )


async def _station(line: Line, every: float, until: float, echoed: list[int]) -> None:
    due = time.monotonic()
    while due < until:
        line.send(MESSAGE)
        if await line.recv() != MESSAGE:
            raise RuntimeError("the server answered something other than what it was sent")
        echoed[0] += 1
        due += every
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def _show_progress(began: float, echoed: list[int]) -> None:
    """A line each second: how long it has run, and the messages echoed so far."""
    while True:
        await asyncio.sleep(1.0)
        print(f"  {time.monotonic() - began:5.1f}s  echoed {echoed[0]:>9,}", flush=True)


async def _drive(
    kind: str, port: int, pid: int, stations: int, rate: float, seconds: float
) -> Measured:
    url = f"ws://127.0.0.1:{port}"
    lines = [await open_line(f"{url}/S{index}", "ocpp1.6") for index in range(stations)]
    echoed = [0]
    began, cpu = time.monotonic(), usage.cpu_seconds({pid})
    progress = asyncio.create_task(_show_progress(began, echoed))
    try:
        async with asyncio.timeout(seconds + ANSWER_WITHIN):
            await asyncio.gather(
                *(_station(line, stations / rate, began + seconds, echoed) for line in lines)
            )
    finally:
        progress.cancel()
    ended, used = time.monotonic(), usage.cpu_seconds({pid}) - cpu
    await asyncio.gather(*(line.close() for line in lines))
    return Measured(kind, echoed[0], ended - began, used)


def measure(kind: str, stations: int, rate: float, seconds: float) -> Measured:
    """One server of the kind, in a process of its own, loaded for `seconds`."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=4096)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_serve, args=(kind, sock, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError(f"the {kind} server did not start within 30 s")
        assert server.pid is not None
        port = sock.getsockname()[1]
        return asyncio.run(_drive(kind, port, server.pid, stations, rate, seconds))
    finally:
        server.terminate()
        server.join()
        sock.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--rate", type=float, default=1500, help="messages a second, all told")
    parser.add_argument("--duration", type=float, default=15, help="seconds measured, each run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each kind, alternating")
    args = parser.parse_args(argv)
    runs: dict[str, list[Measured]] = {kind: [] for kind in KINDS}
    for round_ in range(1, args.rounds + 1):
        for kind in KINDS:
            print(f"round {round_} of {args.rounds}: {kind} ...", flush=True)
            measured = measure(kind, args.stations, args.rate, args.duration)
            runs[kind].append(measured)
            print(measured.line(), flush=True)
    means = {kind: statistics.mean(m.us_a_message for m in runs[kind]) for kind in KINDS}
    print(
        f"server CPU a message: websockets {means['websockets']:.1f} us, sans-I/O "
        f"{means['sans-I/O']:.1f} us (mean of {args.rounds}): websockets' connection adds "
        f"{means['websockets'] - means['sans-I/O']:.1f} us"
    )


if __name__ == "__main__":
    main()
