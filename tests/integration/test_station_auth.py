"""Stations registered with `csms station` must give their password (HTTP Basic), and with
`--unknown-stations reject` no other station may connect."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import websockets
from ocpp.v16 import call as call16
from websockets.exceptions import InvalidStatus

from adapters import station_credentials
from adapters.station_credentials import NOTIFIED_ONE_BY_ONE, generate_password
from bench.sim import Station, Tally
from tests.support import (
    ServerProcess,
    eventually,
    graphql,
    graphql_response,
    offer,
    station16,
    stored_events,
)


def run_station_cli(
    server: ServerProcess, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`csms station ...` on the server's database, as a user runs it."""
    where = ["--database-url", server.database_url] if server.database_url else []
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", "station", *args, *where],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def station_cli(server: ServerProcess, *args: str, stdin: str | None = None) -> str:
    done = run_station_cli(server, *args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout


def url_with(server: ServerProcess, station_id: str, user: str, password: str) -> str:
    return server.ocpp_url(station_id).replace("ws://", f"ws://{user}:{password}@")


async def refusal(url: str, protocol: str = "ocpp1.6") -> Any:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, subprotocols=offer(protocol))
    return refused.value.response


async def boots(server: ServerProcess, station_id: str, url: str | None = None) -> str:
    async with station16(server, station_id, url) as station:
        answer = await station.call(call16.BootNotification("Vendor", "Model"))
        return str(answer.status)


async def test_a_registered_station_must_give_its_password(shared_server: ServerProcess) -> None:
    server = shared_server
    password = station_cli(server, "add", "CP-PW").strip()  # alone on stdout
    assert len(password.split()) == 1 and len(password) >= 16
    assert 16 <= len(password) <= 40

    for url in (
        server.ocpp_url("CP-PW"),  # none
        url_with(server, "CP-PW", "CP-PW", password + "x"),
        url_with(server, "CP-PW", "CP-OTHER", password),  # the user name is the identity
    ):
        response = await refusal(url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    for protocol in ("ocpp2.0.1", "ocpp2.1"):
        assert (await refusal(server.ocpp_url("CP-PW"), protocol)).status_code == 401

    assert await boots(server, "CP-PW", url_with(server, "CP-PW", "CP-PW", password)) == "Accepted"
    assert await boots(server, "CP-NOT-REGISTERED") == "Accepted"

    log = server.log()
    assert "stations: unregistered ones connect, registered ones with their password" in log
    assert "passwords travel unencrypted (--tls-cert)" in log
    assert "as no password given (the last: 'CP-PW')" in log
    assert password not in log


async def test_a_new_password_replaces_the_old_at_once(shared_server: ServerProcess) -> None:
    server = shared_server
    old = station_cli(server, "add", "CP-NEW-PW").splitlines()[-1]
    new = "a-password-of-my-own"
    async with websockets.connect(
        url_with(server, "CP-NEW-PW", "CP-NEW-PW", old), subprotocols=offer("ocpp1.6")
    ) as connected:
        said = station_cli(server, "password", "CP-NEW-PW", "--password-stdin", stdin=new + "\n")
        assert new not in said
        # It authenticated with the old password: it must connect again with the new one.
        async with asyncio.timeout(10):
            await connected.wait_closed()
        assert connected.close_code == 1008

    assert (await refusal(url_with(server, "CP-NEW-PW", "CP-NEW-PW", old))).status_code == 401

    assert server.database_url is not None
    facts = await stored_events(server.database_url, "CP-NEW-PW", "CredentialsChanged")
    assert [fact["change"] for fact in facts] == ["registered, with a password", "password changed"]
    assert all(fact["by"].startswith("cli:") for fact in facts)
    assert old not in json.dumps(facts) and new not in json.dumps(facts)  # no secret kept there
    new_url = url_with(server, "CP-NEW-PW", "CP-NEW-PW", new)
    assert await boots(server, "CP-NEW-PW", new_url) == "Accepted"


def test_a_password_outside_the_ocpp_rule_is_refused(shared_server: ServerProcess) -> None:
    done = run_station_cli(
        shared_server, "add", "CP-SHORT", "--password-stdin", stdin="too-short\n"
    )
    assert done.returncode == 2
    assert "16 to 40 printable ASCII characters" in done.stderr
    assert "CP-SHORT" not in station_cli(shared_server, "list")


@pytest.fixture(scope="module")
def closed_server(
    new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server that refuses stations no one registered."""
    log = tmp_path_factory.mktemp("closed") / "server.log"
    server = ServerProcess(log, new_database(), "--unknown-stations", "reject").start()
    yield server
    server.stop()


async def test_unknown_stations_may_be_refused(closed_server: ServerProcess) -> None:
    server = closed_server
    assert (await refusal(server.ocpp_url("CP-STRANGER"))).status_code == 404

    station_cli(server, "add", "CP-KNOWN", "--no-password")
    assert await boots(server, "CP-KNOWN") == "Accepted"
    [listed] = [line for line in station_cli(server, "list").splitlines() if "CP-KNOWN" in line]
    assert listed.startswith("CP-KNOWN\tregistered ") and listed.endswith("\tnone")

    station_cli(server, "remove", "CP-KNOWN")
    assert (await refusal(server.ocpp_url("CP-KNOWN"))).status_code == 404

    # An operator sees the station, and an auditor who registered and removed it, and when.
    query = """{ station(id: "CP-KNOWN") { id }
        history(stationId: "CP-KNOWN", types: ["CredentialsChanged"]) { events { data } } }"""
    shown = await eventually(
        lambda: graphql(server, query, "auditor"),
        lambda data: len(data["history"]["events"]) == 2,
    )
    assert shown["station"] == {"id": "CP-KNOWN"}
    changes = [event["data"]["change"] for event in shown["history"]["events"]]
    assert changes == ["registered, without a password", "registration removed"]
    assert "as unknown station (the last: 'CP-STRANGER')" in server.log()
    assert "stations: registered ones only" in server.log()


async def test_a_fleet_imported_at_once_connects_with_its_passwords(
    closed_server: ServerProcess,
) -> None:
    server = closed_server
    given = "the-fleet's-own-password"
    # More stations than are notified one by one: every node reads the whole table again.
    fleet = [f"FLEET-{n:05d}" for n in range(1, NOTIFIED_ONE_BY_ONE + 50)]
    printed = station_cli(
        server, "import", "-", stdin=f"FLEET-00000,{given}\n\n" + "\n".join(fleet) + "\n"
    )
    generated = dict(line.split(",", 1) for line in printed.splitlines())
    assert sorted(generated) == fleet
    again = run_station_cli(server, "import", "-", stdin="FLEET-00002\nFLEET-99999\n")
    assert again.returncode == 2 and "registered already: 'FLEET-00002'" in again.stderr
    assert "FLEET-99999" not in station_cli(server, "list")  # all or nothing

    # The load generator's stations, as `bench.load --password` runs them.
    tally = Tally()
    base_url = server.ocpp_url("").rstrip("/")
    give_up_at = time.time() + 30
    for station_id in ("FLEET-00000", fleet[0], fleet[-1]):
        password = generated.get(station_id, given)
        station = Station(base_url, station_id, "ocpp2.0.1", tally, 10, password)
        assert await station.connect(give_up_at) and await station.boot(give_up_at)
        await station.close()
    assert not tally.errors, tally.errors
    wrong = Station(base_url, "FLEET-00000", "ocpp1.6", tally, 10, generated["FLEET-00001"])
    assert not await wrong.connect(give_up_at)
    assert tally.errors == {"connect refused (401)": 1}


async def test_a_change_made_while_a_node_was_not_listening_still_counts(
    shared_server: ServerProcess,
) -> None:
    """Each node mirrors the credentials and hears of changes; one it missed while its listener
    reconnected is read when it listens again."""
    assert shared_server.database_url is not None
    with psycopg.connect(shared_server.database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
        # As `csms station add` does, before the listener is back: its notification is lost.
        station_credentials.register(conn, "CP-MISSED", generate_password())

    async def status() -> int:
        try:
            async with websockets.connect(
                shared_server.ocpp_url("CP-MISSED"),
                subprotocols=offer("ocpp1.6"),
            ):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    assert await eventually(status, lambda code: code == 401, within=10) == 401
    assert "notification listener lost its connection" in shared_server.log()


async def test_an_operators_change_is_in_force_when_the_mutation_answers(
    shared_server: ServerProcess,
) -> None:
    """The node that made the change reads it at once, not when its notification comes back:
    here none comes, the listener being down."""
    assert shared_server.database_url is not None
    token = shared_server.token("operator")
    with psycopg.connect(shared_server.database_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
    registered = await graphql_response(shared_server, REGISTER, token, id="CP-AT-ONCE")
    assert registered["data"]["registerStation"]["change"] == "registered, with a password"
    assert (await refusal(shared_server.ocpp_url("CP-AT-ONCE"))).status_code == 401


REGISTER = """mutation($id: String!, $password: String, $without: Boolean! = false) {
    registerStation(stationId: $id, password: $password, withoutPassword: $without) {
        stationId change generatedPassword } }"""


async def test_operators_register_stations_through_graphql(closed_server: ServerProcess) -> None:
    server = closed_server
    registered = await graphql(server, REGISTER, "operator", id="CP-GQL")
    answer = registered["registerStation"]
    assert answer["change"] == "registered, with a password"
    password = answer["generatedPassword"]
    assert await boots(server, "CP-GQL", url_with(server, "CP-GQL", "CP-GQL", password)) == (
        "Accepted"
    )

    again = await graphql_response(server, REGISTER, server.token("operator"), id="CP-GQL")
    assert "registered already: 'CP-GQL'" in again["errors"][0]["message"]
    short = await graphql_response(
        server, REGISTER, server.token("operator"), id="CP-GQL-2", password="short"
    )
    assert "16 to 40 printable ASCII characters" in short["errors"][0]["message"]
    auditor = await graphql_response(server, REGISTER, server.token("auditor"), id="CP-GQL-3")
    assert "may not do this" in auditor["errors"][0]["message"]

    changed = await graphql(
        server,
        """mutation { setStationPassword(stationId: "CP-GQL", withoutPassword: true) {
            change generatedPassword } }""",
        "operator",
    )
    assert changed["setStationPassword"] == {
        "change": "password removed",
        "generatedPassword": None,
    }
    assert await boots(server, "CP-GQL") == "Accepted"  # registered, no password asked
    await graphql(server, 'mutation { removeStation(stationId: "CP-GQL") { change } }', "operator")
    assert (await refusal(server.ocpp_url("CP-GQL"))).status_code == 404

    assert server.database_url is not None
    facts = await stored_events(server.database_url, "CP-GQL", "CredentialsChanged")
    assert [fact["change"] for fact in facts] == [
        "registered, with a password",
        "password removed",
        "registration removed",
    ]
    [by] = {fact["by"] for fact in facts}
    assert by.startswith("operator:operator-")  # the operator's token, by its generated name
