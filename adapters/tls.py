"""TLS for the OCPP endpoint: OCPP security profile 2 (the server's certificate, stations give
a password) and 3 (stations give a certificate of their own, issued by a CA we trust)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any


class TlsError(Exception):
    pass


def server_context(cert: Path, key: Path | None, client_ca: Path | None) -> ssl.SSLContext:
    """TLS 1.2 or newer, as OCPP's security profiles require; with `client_ca`, every station
    must present a certificate that CA issued."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
        if client_ca is not None:
            context.load_verify_locations(client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as error:
        raise TlsError(
            f"cannot load the TLS files ({error}): --tls-cert takes a PEM certificate chain "
            "(with its key, or the key in --tls-key), --tls-client-ca PEM CA certificates"
        ) from None
    return context


def common_name(peer_certificate: dict[str, Any] | None) -> str | None:
    """The subject's common name of a certificate as `SSLSocket.getpeercert()` gives it."""
    for rdn in (peer_certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
