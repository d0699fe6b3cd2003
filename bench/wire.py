"""A simulated station's WebSocket, lean enough for thousands in one load process.

websockets' sans-I/O client protocol does the handshake and the framing; a plain asyncio
Protocol feeds it bytes. `websockets.connect` wraps the same protocol in a connection with its
own locks, queues and a task per call's timeout; on the machine it shares with the server, the
load generator spent a third of the two cores there.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import functools
import ssl
from collections import deque

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import CLOSED, OPEN, Protocol
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI, parse_uri

CLOSE_TIMEOUT = 5.0  # seconds the server has to end the TCP connection after our close frame


class Line(asyncio.Protocol):
    """One WebSocket connection: text messages out, text messages in, in order."""

    def __init__(self, uri: WebSocketURI, subprotocol: str, max_size: int) -> None:
        self._ws = ClientProtocol(uri, subprotocols=[Subprotocol(subprotocol)], max_size=max_size)
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._inbox: deque[str] = deque()
        self._message = Message()
        self._waiter: asyncio.Future[None] | None = None

    # -- what a station calls -------------------------------------------------------------

    async def opened(self) -> None:
        """Returns once the handshake succeeded; raises its error (InvalidStatus...) if not."""
        await self._opened

    def send(self, text: str) -> None:
        if self._ws.state is not OPEN:
            raise self._closed()
        self._ws.send_text(text.encode())
        self._flush()

    async def recv(self) -> str:
        """The next text message; ConnectionClosed once the connection is gone."""
        while not self._inbox:
            if self._lost.done():
                raise self._closed()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    async def close(self) -> None:
        """Sends a close frame and waits for the server to end the connection."""
        if self._ws.state is OPEN:
            self._ws.send_close()
            self._flush()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.shield(self._lost)
        except TimeoutError:
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._opened.done():
            self._opened.cancel()  # nobody waits for the handshake any more
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._ws.send_request(self._ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self._ws.receive_data(data)
        for event in self._ws.events_received():
            if isinstance(event, Response):
                self._handshake_done()
            elif isinstance(event, Frame):
                self._received(event)
        self._flush()  # pongs, and our answer to a close frame

    def eof_received(self) -> bool:
        self._ws.receive_eof()
        self._flush()
        return False  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._ws.receive_eof()  # idempotent: the protocol is CLOSED from here on
        if not self._opened.done():
            self._opened.set_exception(self._ws.handshake_exc or ConnectionResetError())
        self._lost.set_result(None)
        self._wake()

    # -- inside -----------------------------------------------------------------------------

    def _handshake_done(self) -> None:
        if self._ws.handshake_exc is not None:
            self._opened.set_exception(self._ws.handshake_exc)
        else:
            self._opened.set_result(None)

    def _received(self, frame: Frame) -> None:
        text = self._message.add(frame)
        if text is not None:
            self._inbox.append(text)
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _flush(self) -> None:
        assert self._transport is not None
        send_pending(self._ws, self._transport)

    def _closed(self) -> ConnectionClosed:
        # A station stops using a line that is closing: taken as closed, the protocol can name
        # the close frames it saw.
        if self._ws.state is not CLOSED:
            self._ws.receive_eof()
        return self._ws.close_exc


class Message:
    """A text message put together from its frames (a fragmented one comes in several)."""

    def __init__(self) -> None:
        self._fragments: list[bytes] = []

    def add(self, frame: Frame) -> str | None:
        """The whole message once its last frame has come; None before, or for other frames."""
        if frame.opcode not in (Opcode.TEXT, Opcode.CONT):
            return None
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return None
        text = b"".join(self._fragments).decode()
        self._fragments.clear()
        return text


def send_pending(protocol: Protocol, transport: asyncio.Transport) -> None:
    """Writes what the sans-I/O protocol has to send; an empty chunk means the end of the
    stream (after the close handshake)."""
    for data in protocol.data_to_send():
        if data:
            transport.write(data)
        elif transport.can_write_eof():
            transport.write_eof()


@functools.cache
def _tls(cafile: str | None = None) -> ssl.SSLContext:
    """One TLS context for every wss:// line: making one loads the CA certificates (the
    system's, or those of `cafile`)."""
    # asyncio's read buffer of 256 KiB per TLS connection would take 2.7 GiB for 10,000
    # stations; 16 KiB, a TLS record's most, is enough.
    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024
    return ssl.create_default_context(cafile=cafile)


async def open_line(
    url: str, subprotocol: str, max_size: int = 1 << 20, cafile: str | None = None
) -> Line:
    """A line whose handshake succeeded; the handshake's error (InvalidStatus...) otherwise."""
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    line: Line | None = None
    try:
        _, line = await loop.create_connection(
            lambda: Line(uri, subprotocol, max_size),
            uri.host,
            uri.port,
            ssl=_tls(cafile) if uri.secure else None,
        )
        await line.opened()
    except BaseException:
        if line is not None:
            line.abort()
        raise
    return line
