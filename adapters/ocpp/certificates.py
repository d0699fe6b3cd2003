"""Certificate services a station may ask for. None is offered yet: each request is refused, as
the spec allows, and the refusal recorded; no certificate is ever pretended to be valid."""

from __future__ import annotations

from typing import Any

from adapters.ocpp.translator import Inbound, Submit
from domain import commands as cmd
from domain.station import ChargingStation

SIGNING, EV_CONTRACT, OCSP_STATUS = "signing", "ev-contract", "ocsp-status"
STATUS_INFO = {
    "reasonCode": "NoCertService",
    "additionalInfo": "This CSMS has no certificate authority configured.",
}


async def record_refusal(inbound: Inbound, submit: Submit, service: str, answer: str) -> None:
    await submit(
        cmd.RecordStationReport(
            inbound.station_id,
            ChargingStation.CertificateServiceRefused,
            {"service": service, "request": inbound.call.payload, "answer": answer},
            inbound.received_at,
        )
    )


async def refuse_signing(inbound: Inbound, submit: Submit) -> dict[str, Any]:
    """1.6 security extension: SignCertificate."""
    await record_refusal(inbound, submit, SIGNING, "Rejected")
    return {"status": "Rejected"}
