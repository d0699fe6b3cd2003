"""Stations over TLS: the server's certificate and a password (security profile 2), or a
client certificate of the station's own (security profile 3)."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.exceptions import InvalidStatus

from adapters.tls import TlsError, server_context
from bench.sim import Station, Tally
from tests.integration.test_station_auth import station_cli
from tests.support import ServerProcess, offer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_files(ca: trustme.CA, folder: Path) -> tuple[Path, Path]:
    """The server's certificate chain and key in one PEM file, and the CA's certificate."""
    chain, authority = folder / "server.pem", folder / "ca.pem"
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(chain)
    ca.cert_pem.write_to_path(authority)
    return chain, authority


def client_tls(ca: trustme.CA, folder: Path, certificate_of: str | None = None) -> ssl.SSLContext:
    """A station's TLS: it trusts our CA and, given a name, presents a certificate for it."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if certificate_of is not None:
        leaf = ca.issue_cert(f"{certificate_of.lower()}.stations.test", common_name=certificate_of)
        leaf.private_key_and_cert_chain_pem.write_to_path(folder / f"{certificate_of}.pem")
        context.load_cert_chain(folder / f"{certificate_of}.pem")
    return context


def wss(server: ServerProcess, station_id: str, password: str | None = None) -> str:
    credentials = f"{station_id}:{password}@" if password else ""
    return f"wss://{credentials}127.0.0.1:{server.ocpp_port}/{station_id}"


async def heartbeat(url: str, tls: ssl.SSLContext) -> str:
    async with websockets.connect(url, ssl=tls, subprotocols=offer("ocpp2.0.1")) as ws:
        await ws.send('[2, "h1", "Heartbeat", {}]')
        return str(await ws.recv())


async def test_profile_2_a_password_over_tls(
    ca: trustme.CA,
    tmp_path: Path,
    database_url: str,
    start_server: Callable[..., ServerProcess],
) -> None:
    chain, authority = server_files(ca, tmp_path)
    server = start_server(database_url, "--tls-cert", str(chain))
    password = station_cli(server, "add", "CP-TLS-2").splitlines()[-1]
    tls = client_tls(ca, tmp_path)

    # The load generator's station, as `bench.load --password ... --ca ...` runs it.
    tally = Tally()
    url = f"wss://127.0.0.1:{server.ocpp_port}"
    station = Station(url, "CP-TLS-2", "ocpp2.0.1", tally, 10, password, str(authority))
    assert await station.connect(time.time() + 10) and await station.boot(time.time() + 10)
    await station.close()
    assert not tally.errors, tally.errors

    assert (await heartbeat(wss(server, "CP-TLS-2", password), tls)).startswith('[3,"h1",')
    # A frame over the server's TLS read buffer (16 KiB) takes several reads, and arrives whole.
    vendor_data = json.dumps([2, "d1", "DataTransfer", {"vendorId": "V", "data": "x" * 60_000}])
    async with websockets.connect(
        wss(server, "CP-TLS-2", password),
        ssl=tls,
        subprotocols=offer("ocpp2.0.1"),
    ) as ws:
        await ws.send(vendor_data)
        assert json.loads(await ws.recv())[:2] == [3, "d1"]
    with pytest.raises(InvalidStatus) as refused:
        await heartbeat(wss(server, "CP-TLS-2"), tls)
    assert refused.value.response.status_code == 401
    with pytest.raises(ssl.SSLCertVerificationError):  # a station that does not trust us
        await heartbeat(wss(server, "CP-TLS-2", password), ssl.create_default_context())
    with pytest.raises((ConnectionError, websockets.exceptions.InvalidMessage)):
        await heartbeat(server.ocpp_url("CP-TLS-2"), None)  # type: ignore[arg-type]


async def test_profile_3_the_station_s_own_certificate(
    ca: trustme.CA,
    tmp_path: Path,
    database_url: str,
    start_server: Callable[..., ServerProcess],
) -> None:
    chain, authority = server_files(ca, tmp_path)
    server = start_server(database_url, "--tls-cert", str(chain), "--tls-client-ca", str(authority))
    station_cli(server, "add", "CP-TLS-3")  # its password is not needed with its certificate

    answer = await heartbeat(wss(server, "CP-TLS-3"), client_tls(ca, tmp_path, "CP-TLS-3"))
    assert answer.startswith('[3,"h1",')
    with pytest.raises(InvalidStatus) as refused:
        await heartbeat(wss(server, "CP-TLS-3"), client_tls(ca, tmp_path, "CP-SOMEONE-ELSE"))
    assert refused.value.response.status_code == 403
    with pytest.raises((ssl.SSLError, ConnectionError, websockets.exceptions.InvalidMessage)):
        await heartbeat(wss(server, "CP-TLS-3"), client_tls(ca, tmp_path))  # no certificate
    assert "as a certificate of 'CP-SOMEONE-ELSE'" in server.log()
    assert "stations connect to wss://" in server.log() and "; over TLS" in server.log()


def test_unusable_tls_files_are_named_before_the_server_starts(
    ca: trustme.CA, tmp_path: Path
) -> None:
    chain, _ = server_files(ca, tmp_path)
    (tmp_path / "not-pem.txt").write_text("not a certificate\n")
    cases = [
        ((tmp_path / "missing.pem", None, None), "--tls-cert"),
        ((tmp_path / "not-pem.txt", None, None), "--tls-cert"),
        ((chain, None, tmp_path / "not-pem.txt"), "--tls-client-ca"),
    ]
    for files, option in cases:
        with pytest.raises(TlsError) as refused:
            server_context(*files)
        assert str(refused.value).startswith(option), refused.value
    assert server_context(chain, None, None).minimum_version >= ssl.TLSVersion.TLSv1_2
