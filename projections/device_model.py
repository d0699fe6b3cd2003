"""The stations' own models of themselves: one row per variable attribute.

Reports (a full inventory, possibly spread over several messages) and events (a value that
changed) both land here; the newer statement about an attribute wins, by the station's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from domain.station import ChargingStation
from projections.base import SqlView, Statement

ACTUAL = "Actual"


class DeviceModelView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS station_variables (
            station_uuid uuid NOT NULL,
            variable_key text NOT NULL,
            component text NOT NULL, component_instance text,
            evse_id integer, connector_id integer,
            variable text NOT NULL, variable_instance text,
            attribute_type text NOT NULL,
            value text, mutability text, persistent boolean, constant boolean,
            characteristics jsonb,
            reported_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (station_uuid, variable_key))""",
    )


_UPSERT = """
INSERT INTO station_variables (station_uuid, variable_key, component, component_instance,
    evse_id, connector_id, variable, variable_instance, attribute_type, value, mutability,
    persistent, constant, characteristics, reported_at, updated_at)
VALUES (%(id)s, %(key)s, %(component)s, %(component_instance)s, %(evse_id)s, %(connector_id)s,
    %(variable)s, %(variable_instance)s, %(type)s, %(value)s, %(mutability)s, %(persistent)s,
    %(constant)s, %(characteristics)s, %(reported_at)s, %(at)s)
ON CONFLICT (station_uuid, variable_key) DO UPDATE SET
    value = EXCLUDED.value,
    mutability = COALESCE(EXCLUDED.mutability, station_variables.mutability),
    persistent = COALESCE(EXCLUDED.persistent, station_variables.persistent),
    constant = COALESCE(EXCLUDED.constant, station_variables.constant),
    characteristics = COALESCE(EXCLUDED.characteristics, station_variables.characteristics),
    reported_at = EXCLUDED.reported_at, updated_at = EXCLUDED.updated_at
WHERE station_variables.reported_at <= EXCLUDED.reported_at"""


def variable_key(entry: dict[str, Any], attribute_type: str) -> str:
    """Identifies one attribute of one variable of one component, instances and EVSE included."""
    parts = (
        entry["component"],
        entry.get("component_instance") or "",
        "" if entry.get("evse_id") is None else str(entry["evse_id"]),
        "" if entry.get("connector_id") is None else str(entry["connector_id"]),
        entry["variable"],
        entry.get("variable_instance") or "",
        attribute_type,
    )
    return "\x1f".join(parts)  # a separator no identifier contains


def _where(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        name: entry.get(name)
        for name in (
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
        )
    }


def _reported(event: ChargingStation.VariablesReported) -> Iterator[Statement]:
    for entry in event.variables:
        characteristics = entry.get("characteristics")
        for attribute in entry["attributes"]:
            yield (
                _UPSERT,
                {
                    **_where(entry),
                    "id": event.originator_id,
                    "key": variable_key(entry, attribute["type"]),
                    "type": attribute["type"],
                    "value": attribute.get("value"),
                    "mutability": attribute.get("mutability"),
                    "persistent": attribute.get("persistent"),
                    "constant": attribute.get("constant"),
                    "characteristics": Jsonb(characteristics) if characteristics else None,
                    "reported_at": event.generated_at,
                    "at": event.timestamp,
                },
            )


def _changed(event: ChargingStation.VariableEventsReported) -> Iterator[Statement]:
    for entry in event.events:
        yield (
            _UPSERT,
            {
                **_where(entry),
                "id": event.originator_id,
                "key": variable_key(entry, ACTUAL),
                "type": ACTUAL,
                "value": entry["actual_value"],
                "mutability": None,
                "persistent": None,
                "constant": None,
                "characteristics": None,
                "reported_at": entry["timestamp"],
                "at": event.timestamp,
            },
        )


class DeviceModelProjection(Projection[DeviceModelView]):
    name = "device_model"
    topics = tuple(
        get_topic(cls)
        for cls in (ChargingStation.VariablesReported, ChargingStation.VariableEventsReported)
    )

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: ChargingStation.VariablesReported, tracking: Tracking) -> None:
        self.view.record(tracking, list(_reported(event)))

    @process_event.register
    def _(self, event: ChargingStation.VariableEventsReported, tracking: Tracking) -> None:
        self.view.record(tracking, list(_changed(event)))
