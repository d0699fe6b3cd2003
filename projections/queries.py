"""Reads of the projections' tables, for the API."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from projections import event_log

Row = dict[str, Any]

_STATIONS = "SELECT * FROM station_status"
_CONNECTORS = (
    "SELECT * FROM connector_status WHERE station_uuid = ANY(%s) "
    "ORDER BY station_uuid, evse_id, connector_id"
)


async def _fetch(conn: AsyncConnection[Any], sql: str, params: Any = None) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql, params)
        return await cursor.fetchall()


async def stations(
    conn: AsyncConnection[Any], station_id: str | None = None, station_uuid: Any = None
) -> list[Row]:
    """Stations with their connectors (under the key `connectors`), ordered by id."""
    if station_uuid is not None:
        rows = await _fetch(conn, _STATIONS + " WHERE station_uuid = %s", (station_uuid,))
    elif station_id is None:
        rows = await _fetch(conn, _STATIONS + " ORDER BY station_id")
    else:
        rows = await _fetch(conn, _STATIONS + " WHERE station_id = %s", (station_id,))
    connectors = await _fetch(conn, _CONNECTORS, ([r["station_uuid"] for r in rows],))
    by_station: dict[Any, list[Row]] = {}
    for connector in connectors:
        by_station.setdefault(connector["station_uuid"], []).append(connector)
    for row in rows:
        row["connectors"] = by_station.get(row["station_uuid"], [])
    return rows


async def transactions(
    conn: AsyncConnection[Any],
    station_id: str | None = None,
    active: bool | None = None,
    limit: int = 100,
) -> list[Row]:
    """Transactions, newest first."""
    where, params = [], []
    if station_id is not None:
        where.append("station_id = %s")
        params.append(station_id)
    if active is not None:
        where.append("stopped_at IS NULL" if active else "stopped_at IS NOT NULL")
    sql = "SELECT * FROM transactions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC NULLS LAST, transaction_key DESC LIMIT %s"
    return await _fetch(conn, sql, [*params, limit])


async def variables(
    conn: AsyncConnection[Any],
    station_uuid: Any,
    component: str | None = None,
    variable: str | None = None,
) -> list[Row]:
    """A station's variable attributes, by component, EVSE, connector and variable."""
    sql = "SELECT * FROM station_variables WHERE station_uuid = %s"
    params: list[Any] = [station_uuid]
    for column, value in (("component", component), ("variable", variable)):
        if value is not None:
            sql += f" AND {column} = %s"
            params.append(value)
    sql += (
        " ORDER BY component, component_instance NULLS FIRST, evse_id NULLS FIRST,"
        " connector_id NULLS FIRST, variable, variable_instance NULLS FIRST, attribute_type"
    )
    return await _fetch(conn, sql, params)


async def remote_commands(
    conn: AsyncConnection[Any], station_id: str | None, limit: int
) -> list[Row]:
    """Remote commands, newest first."""
    sql = "SELECT * FROM remote_commands"
    params: list[Any] = []
    if station_id is not None:
        sql += " WHERE station_id = %s"
        params.append(station_id)
    sql += " ORDER BY requested_at DESC, command_id LIMIT %s"
    return await _fetch(conn, sql, [*params, limit])


async def id_tokens(conn: AsyncConnection[Any], id_token: str | None, limit: int) -> list[Row]:
    """Registered id tokens, by value."""
    if id_token is not None:
        return await _fetch(conn, "SELECT * FROM id_tokens WHERE id_token = %s", (id_token,))
    return await _fetch(conn, "SELECT * FROM id_tokens ORDER BY id_token LIMIT %s", (limit,))


async def tariffs(conn: AsyncConnection[Any]) -> list[Row]:
    """Every tariff at its latest version, by name."""
    return await _fetch(
        conn,
        "SELECT DISTINCT ON (tariff_id) * FROM billing_tariffs ORDER BY tariff_id, version DESC",
    )


async def charging_sessions(
    conn: AsyncConnection[Any], after: int, limit: int, session_id: Any = None
) -> list[Row]:
    """Session versions in feed order, after a feed position (of one session, if given)."""
    sql = "SELECT * FROM billing_feed WHERE feed_position > %s"
    params: list[Any] = [after]
    if session_id is not None:
        sql += " AND session_id = %s"
        params.append(session_id)
    sql += " ORDER BY feed_position LIMIT %s"
    return await _fetch(conn, sql, [*params, limit])


async def history(
    conn: AsyncConnection[Any],
    *,
    station_id: str | None,
    aggregate_ids: list[Any] | None,
    since: Any,
    until: Any,
    types: list[str] | None,
    after: int,
    limit: int,
) -> list[Row]:
    """Stored events in their global order, after a position, filtered."""
    where: list[str] = ["position > %s"]
    params: list[Any] = [after]
    if station_id is not None:
        where.append("station_id = %s")
        params.append(station_id)
    if aggregate_ids is not None:
        where.append("events.originator_id = ANY(%s)")  # by the store's key
        params.append(aggregate_ids)
    if since is not None:
        where.append("recorded_at >= %s")
        params.append(since)
    if until is not None:
        where.append("recorded_at < %s")
        params.append(until)
    if types:
        where.append("(event_type = ANY(%s) OR aggregate_type || '.' || event_type = ANY(%s))")
        params += [types, types]
    sql = (
        f"SELECT event_log.*, {event_log.DATA} AS data FROM event_log "
        f"JOIN {event_log.EVENTS_TABLE} AS events ON events.notification_id = event_log.position "
        f"WHERE {' AND '.join(where)} ORDER BY position LIMIT %s"
    )
    rows = await _fetch(conn, sql, [*params, limit])
    for row in rows:
        row["data"] = event_log.readable(row["data"])
    return rows
