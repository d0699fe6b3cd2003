"""Exports of finished charging sessions (their latest versions) for a period: CSV, OCPI CDRs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

CSV_COLUMNS = (
    "session_id", "version", "reason", "station_id", "transaction_id", "evse_id",
    "connector_id", "id_token", "started_at", "stopped_at", "duration_seconds",
    "charging_seconds", "idle_seconds", "energy_kwh", "tariff_name", "currency", "energy_cost",
    "charging_time_cost", "idle_cost", "session_fee", "subtotal", "tax_rate", "tax", "total",
)  # fmt: skip

_LATEST_IN_PERIOD = """
SELECT * FROM billing_feed
WHERE latest AND stopped_at >= %s AND stopped_at < %s
ORDER BY stopped_at, session_id"""


def sessions(database_url: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The latest version of every session that stopped in [start, end)."""
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(_LATEST_IN_PERIOD, (start, end))
        return cursor.fetchall()


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        values = {**row, "energy_kwh": (row["energy_wh"] / 1000).normalize()}
        writer.writerow(_cell(values.get(column)) for column in CSV_COLUMNS)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


# --- OCPI 2.2.1 CDRs ---------------------------------------------------------------------------

_PLACEHOLDER_LOCATION = {
    "address": "unknown",
    "city": "unknown",
    "country": "ZZZ",  # ISO 3166 user-assigned code: no country given
    "coordinates": {"latitude": "0.000000", "longitude": "0.000000"},
}


class ExportError(Exception):
    pass


def to_ocpi(
    rows: Iterable[Mapping[str, Any]],
    country_code: str,
    party_id: str,
    locations: Mapping[str, Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], int]:
    """CDRs of the priced sessions, and how many were left out for want of a tariff."""
    if len(country_code) != 2 or len(party_id) != 3:
        raise ExportError("OCPI needs a 2-letter --country-code and a 3-character --party-id")
    cdrs, unpriced = [], 0
    for row in rows:
        if row["currency"] is None:
            unpriced += 1
            continue
        cdrs.append(_cdr(row, country_code.upper(), party_id.upper(), locations))
    return cdrs, unpriced


def _money(excl: Decimal, rate: Decimal) -> dict[str, float]:
    return {"excl_vat": float(excl), "incl_vat": float((excl * (1 + rate)).quantize(excl))}


def _hours(seconds: int) -> float:
    return round(seconds / 3600, 4)


def _cdr(
    row: Mapping[str, Any], country: str, party: str, locations: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    rate = row["tax_rate"] or Decimal(0)
    kwh = round(float(row["energy_wh"] / 1000), 4)
    charging_end = row["started_at"] + timedelta(seconds=row["charging_seconds"])
    periods = [
        {
            "start_date_time": _utc(row["started_at"]),
            "dimensions": [
                {"type": "ENERGY", "volume": kwh},
                {"type": "TIME", "volume": _hours(row["charging_seconds"])},
            ],
        }
    ]
    if row["idle_seconds"]:
        periods.append(
            {
                "start_date_time": _utc(charging_end),
                "dimensions": [{"type": "PARKING_TIME", "volume": _hours(row["idle_seconds"])}],
            }
        )
    station = str(row["station_id"])
    evse = row["evse_id"] or 1
    place = {**_PLACEHOLDER_LOCATION, **locations.get(station, {})}
    token = row["id_token"] or "UNKNOWN"
    return {
        "country_code": country,
        "party_id": party,
        "id": str(row["session_id"]),
        "start_date_time": _utc(row["started_at"]),
        "end_date_time": _utc(row["stopped_at"]),
        "session_id": str(row["transaction_id"])[:36],
        "cdr_token": {
            "country_code": country,
            "party_id": party,
            "uid": token[:36],
            "type": "RFID" if row["token_type"] in (None, "ISO14443", "ISO15693") else "OTHER",
            "contract_id": token[:36],
        },
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": station[:36],
            "name": place.get("name", station)[:255],
            "address": place["address"][:45],
            "city": place["city"][:45],
            **({"postal_code": place["postal_code"][:10]} if place.get("postal_code") else {}),
            "country": place["country"],
            "coordinates": place["coordinates"],
            "evse_uid": f"{station}-{evse}"[:36],
            "evse_id": f"{station}*{evse}"[:48],
            "connector_id": str(row["connector_id"] or 1),
            "connector_standard": place.get("connector_standard", "IEC_62196_T2"),
            "connector_format": place.get("connector_format", "SOCKET"),
            "connector_power_type": place.get("connector_power_type", "AC_3_PHASE"),
        },
        "currency": row["currency"],
        "charging_periods": periods,
        "total_cost": {"excl_vat": float(row["subtotal"]), "incl_vat": float(row["total"])},
        "total_fixed_cost": _money(row["session_fee"], rate),
        "total_energy": kwh,
        "total_energy_cost": _money(row["energy_cost"], rate),
        "total_time": _hours(row["duration_seconds"]),
        "total_time_cost": _money(row["charging_time_cost"], rate),
        "total_parking_time": _hours(row["idle_seconds"]),
        "total_parking_cost": _money(row["idle_cost"], rate),
        "last_updated": _utc(row["priced_at"]),
    }


def ocpi_json(cdrs: list[dict[str, Any]]) -> str:
    return json.dumps(cdrs, indent=2) + "\n"
