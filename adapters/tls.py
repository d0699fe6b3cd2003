"""TLS for the OCPP endpoint: OCPP security profile 2 (the server's certificate, stations give
a password) and 3 (stations give a certificate of their own, issued by a CA we trust)."""

from __future__ import annotations

import asyncio.sslproto
import ssl
from pathlib import Path
from typing import Any

# asyncio reads each TLS connection's bytes into a buffer of its own, of 256 KiB by default: 281
# KiB per idle connection in all, 5.5 GiB for 20,000 stations. 16 KiB, a TLS record's most,
# left 41 KiB per connection; a larger frame takes more reads.
TLS_READ_BUFFER = 16 * 1024


class TlsError(Exception):
    pass


def server_context(cert: Path, key: Path | None, client_ca: Path | None) -> ssl.SSLContext:
    """TLS 1.2 or newer, as OCPP's security profiles require; with `client_ca`, every station
    must present a certificate that CA issued."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        files = f"--tls-cert {cert}" + (f" with --tls-key {key}" if key else "")
        raise TlsError(
            f"{files}: {_reason(error)}; expected a PEM certificate chain and its private key "
            "(in the same file, or in --tls-key)"
        ) from None
    if client_ca is not None:
        try:
            context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as error:
            raise TlsError(
                f"--tls-client-ca {client_ca}: {_reason(error)}; expected PEM CA certificates"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _reason(error: OSError | ssl.SSLError) -> str:
    if isinstance(error, ssl.SSLError):
        return f"not usable ({error.reason or error})"
    return error.strerror or str(error)


def lean_read_buffers() -> None:
    """Gives every TLS connection this process makes from now on a TLS_READ_BUFFER."""
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


def common_name(peer_certificate: dict[str, Any] | None) -> str | None:
    """The subject's common name of a certificate as `SSLSocket.getpeercert()` gives it."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
