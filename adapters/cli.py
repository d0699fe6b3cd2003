"""The `csms` command."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import psycopg

from adapters import api_tokens, audit, export, replay, station_credentials
from adapters import projection_admin as admin
from adapters.collection import tune_garbage_collection
from adapters.parallel_rebuild import RebuildFailed
from adapters.postgres import eventsourcing_env, open_store, start_embedded
from adapters.projection_host import lock_key
from adapters.server import (
    PROJECTIONS,
    PortInUse,
    Settings,
    configure_logging,
    serve,
)
from adapters.tls import TlsError
from domain.operator_commands import RecordCredentialsChange
from domain.station import CredentialsChange


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csms", description="An event-sourced Charging Station Management System (OCPP-J)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "serve",
        help="run the CSMS: the OCPP gateway, the projections and the GraphQL API",
        description="Run the CSMS. Without a database URL it starts an embedded PostgreSQL "
        "in the data directory, and stops it on exit.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    defaults = Settings()
    run.add_argument(
        "--host", default=defaults.host, help="address the OCPP WebSocket endpoint listens on"
    )
    run.add_argument(
        "--ocpp-port",
        type=int,
        default=defaults.ocpp_port,
        help="port of the OCPP endpoint; stations connect to ws://HOST:PORT/<id>",
    )
    run.add_argument(
        "--http-host",
        default=defaults.http_host,
        help="address the GraphQL API and the upload endpoint listen on",
    )
    run.add_argument(
        "--http-port",
        type=int,
        default=defaults.http_port,
        help="port of the GraphQL API (http://HTTP_HOST:PORT/graphql)",
    )
    run.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (env DATABASE_URL); if unset, an embedded server is used",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=defaults.data_dir,
        help="folder of the embedded PostgreSQL's data",
    )
    run.add_argument(
        "--max-frame-bytes",
        type=int,
        default=defaults.max_frame_bytes,
        help="largest WebSocket frame accepted; a larger one closes the connection",
    )
    run.add_argument(
        "--heartbeat-interval",
        type=int,
        default=defaults.heartbeat_interval,
        help="heartbeat interval, in seconds, given to stations at boot",
    )
    run.add_argument(
        "--public-url",
        default=None,
        help="base URL stations use to reach the HTTP port (diagnostics uploads); "
        "default http://HTTP_HOST:HTTP_PORT",
    )
    run.add_argument(
        "--command-timeout",
        type=float,
        default=defaults.command_timeout,
        help="seconds a station has to answer a remote command",
    )
    run.add_argument(
        "--unknown-id-tokens",
        choices=["accept", "reject"],
        default=defaults.unknown_id_tokens,
        help="what to answer for an id token no operator registered (recorded either way)",
    )
    run.add_argument(
        "--unknown-stations",
        choices=["accept", "reject"],
        default=defaults.unknown_stations,
        help="whether a station no one registered (csms station add) may connect; a "
        "registered station with a password must give it either way",
    )
    run.add_argument(
        "--tls-cert",
        type=Path,
        help="PEM certificate chain (and key, unless --tls-key): stations connect over wss:// "
        "(security profile 2)",
    )
    run.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    run.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA certificates: every station must present a certificate they issued, "
        "with its identity as common name, and needs no password (security profile 3)",
    )
    run.add_argument(
        "--max-upload-bytes",
        type=int,
        default=defaults.max_upload_bytes,
        help="largest diagnostics file a station may upload",
    )
    run.add_argument(
        "--frame-retention-days",
        type=int,
        default=defaults.frame_retention_days,
        help="days the journal keeps every OCPP frame in and out (0: keep no journal)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=defaults.workers,
        help="processes sharing the ports and the database (one event loop each)",
    )
    run.add_argument(
        "--max-boot-backlog",
        type=int,
        default=defaults.max_boot_backlog,
        help="commands waiting in a worker above which a booting station is answered Pending "
        "and told to boot again in 20-60 s (0: always accept)",
    )
    run.add_argument(
        "--max-loop-lag",
        type=float,
        default=defaults.max_loop_lag,
        help="seconds the event loop may be behind before a connecting station is refused "
        "(HTTP 503, Retry-After 20-60 s) (0: never refuse)",
    )
    run.add_argument(
        "--stop-timeout",
        type=float,
        default=defaults.stop_timeout,
        help="seconds a stopping server waits to commit what it holds (the database may be "
        "gone) before it exits with code 1 anyway",
    )
    run.add_argument(
        "--store",
        choices=["postgres", "memory"],
        default=defaults.store,
        help="where events are kept; memory loses them at exit and feeds no view "
        "(a benchmark reference for what durable storage costs)",
    )
    run.add_argument(
        "--projections",
        choices=["run", "elsewhere"],
        default=defaults.projections,
        help="run: this node feeds the views (read models), with --workers 2 or more from a "
        "process of their own; elsewhere: it feeds none, and only holds stations and serves the "
        "API (another node on the same database must run them, or the views stand still)",
    )
    run.add_argument(
        "--log-level",
        default=defaults.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    _token_commands(commands)
    _station_commands(commands)
    _projection_commands(commands)
    _export_commands(commands)
    _audit_commands(commands)
    return parser


def _audit_commands(commands: Any) -> None:
    audit_parser = commands.add_parser("audit", help="prove the history intact")
    actions = audit_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check every stored event's hash chains; names the first event that was changed, "
        "removed or inserted out of place",
    )
    _database_options(verify)
    replay = actions.add_parser(
        "replay",
        help="rebuild every projection as it stood at an instant into a new schema",
        description="Replays the events recorded at or before --until through every "
        "projection, into a new schema (default audit_<until>), for comparison with the live "
        "tables.",
    )
    replay.add_argument("--until", required=True, type=_moment, help="ISO time")
    replay.add_argument("--schema", help="the schema to create (default: audit_<until>)")
    _database_options(replay)


def _audit(args: argparse.Namespace) -> int:
    url = _store_url(args)
    if url is None:
        return 2
    if args.action == "replay":
        return _replay(args, url)

    def progress(done: int, seconds: float) -> None:
        print(
            f"\r{done:>12,} events checked  {done / max(seconds, 1e-9):,.0f} ev/s",
            end="",
            file=sys.stderr,
        )

    verdict = audit.verify(url, progress)
    print(file=sys.stderr)
    if not verdict.intact:
        print(f"TAMPERED: {verdict.problem} ({verdict.checked} events before it are intact)")
        return 1
    head = verdict.head.hex() if verdict.head else "none"
    print(
        f"intact: {verdict.checked} events verified in {verdict.seconds:.2f} s"
        f"{f' ({verdict.unchained} stored before the chain began)' if verdict.unchained else ''}"
        f"; chain head {head}"
    )
    return 0


def _projection_commands(commands: Any) -> None:
    projections = commands.add_parser(
        "projections",
        help="list the projections with their position and lag, or rebuild one",
        description="Without an action: each projection's position (the last event it "
        "applied), how many events of its topics it is behind, and whether a server runs it.",
    )
    _database_options(projections)
    actions = projections.add_subparsers(dest="action", metavar="ACTION")
    rebuild = actions.add_parser(
        "rebuild",
        help="rebuild a projection from the first event, with progress; servers keep serving",
    )
    rebuild.add_argument("name", help="the projection's name, as `csms projections` lists it")
    rebuild.add_argument(
        "--processes",
        type=int,
        help="processes that apply the events, each a share of the aggregates, for the "
        "projections that allow it (transactions, billing, event_log); a server that runs the "
        f"projection is asked for as many (default: one per core from {admin.PARALLEL_FROM:,} "
        "events, else one)",
    )
    _database_options(rebuild, given_before=True)


def _export_commands(commands: Any) -> None:
    export = commands.add_parser("export", help="export finished charging sessions")
    what = export.add_subparsers(dest="what", required=True, metavar="WHAT")
    sessions = what.add_parser(
        "sessions",
        help="sessions that stopped in [--from, --to), their latest versions, as CSV or "
        "OCPI 2.2.1 CDRs",
    )
    sessions.add_argument("--from", dest="start", required=True, type=_moment, help="ISO time")
    sessions.add_argument("--to", dest="end", required=True, type=_moment, help="ISO time")
    sessions.add_argument("--format", choices=["csv", "ocpi"], default="csv")
    sessions.add_argument("--output", type=Path, help="a file to write (default: stdout)")
    sessions.add_argument("--country-code", default="", help="OCPI: your 2-letter country code")
    sessions.add_argument("--party-id", default="", help="OCPI: your 3-character party id")
    sessions.add_argument(
        "--locations",
        type=Path,
        help="OCPI: a JSON file {station id: {name, address, city, postal_code, country, "
        "coordinates: {latitude, longitude}, connector_standard, ...}}",
    )
    _database_options(sessions)


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _store_url(args: argparse.Namespace) -> str | None:
    """The database URL, if it holds a CSMS store; else says what to do and gives None."""
    url: str = args.database_url or start_embedded(args.data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('csms_events')").fetchone()
    if found and found[0] is not None:
        return url
    print(
        "csms: this database holds no CSMS store yet; run `csms serve` on it once "
        "(or give the --database-url / --data-dir the server uses)",
        file=sys.stderr,
    )
    return None


def _replay(args: argparse.Namespace, url: str) -> int:
    schema = args.schema or f"audit_{args.until.astimezone(UTC):%Y%m%dT%H%M%SZ}".lower()
    try:
        applied = replay.replay_until(
            url, eventsourcing_env(url), PROJECTIONS, args.until, schema, _progress_bar
        )
    except replay.ReplayError as error:
        print(f"csms audit replay: {error}", file=sys.stderr)
        return 2
    print(
        f"schema {schema}: every projection as of {args.until.isoformat()} "
        f"({applied} events recorded by then)"
    )
    return 0


def _projections(args: argparse.Namespace) -> int:
    url = _store_url(args)
    if url is None:
        return 2
    env = eventsourcing_env(url)
    by_name = {projection.name: (projection, view) for projection, view in PROJECTIONS}
    if args.action == "rebuild":
        if args.name not in by_name:
            print(
                f"csms projections: no projection {args.name!r}; "
                f"choose one of {', '.join(by_name)}",
                file=sys.stderr,
            )
            return 2
        projection, view = by_name[args.name]
        try:
            count = admin.rebuild(
                url, env, projection, view, lock_key(projection), _progress_bar, args.processes
            )
        except RebuildFailed as failure:
            print(
                f"\n{failure.detail}csms projections: rebuilding {args.name} failed: {failure}\n"
                "The view is left without a position: run the rebuild again once the cause is "
                "mended (or start a server, which rebuilds it).",
                file=sys.stderr,
            )
            return 1
        print(f"rebuilt {args.name}: {count} events", file=sys.stderr)
        return 0
    print(f"{'projection':<18} {'position':>10} {'behind':>8}  runs")
    with psycopg.connect(url, autocommit=True) as conn:
        for projection, _ in PROJECTIONS:
            found = admin.standing(conn, projection, lock_key(projection))
            where = _RUNS[found.held_by]
            print(f"{found.name:<18} {found.position:>10} {found.behind:>8}  {where}")
    return 0


_RUNS: dict[admin.Holder | None, str] = {
    "server": "on a server",
    "command": "rebuilt by `csms projections rebuild`",
    None: "nowhere (no server running)",
}


def _progress_bar(done: int, of: int, seconds: float) -> None:
    width = 30
    filled = width if of == 0 else width * done // of
    rate = done / seconds if seconds > 0 else 0.0
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done >= of else ""
    print(f"\r[{bar}] {done:>9,}/{of:,} events  {rate:,.0f} ev/s", end=end, file=sys.stderr)


def _export(args: argparse.Namespace) -> int:
    url = _store_url(args)
    if url is None:
        return 2
    rows = export.sessions(url, args.start, args.end)
    if args.format == "csv":
        text = export.to_csv(rows)
    else:
        locations = json.loads(args.locations.read_text()) if args.locations else {}
        try:
            cdrs, unpriced = export.to_ocpi(rows, args.country_code, args.party_id, locations)
        except export.ExportError as error:
            print(f"csms export: {error}", file=sys.stderr)
            return 2
        if unpriced:
            print(
                f"csms export: {unpriced} sessions without a tariff are not CDRs; "
                "see them with --format csv",
                file=sys.stderr,
            )
        text = export.ocpi_json(cdrs)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    print(f"exported {len(rows)} sessions", file=sys.stderr)
    return 0


def _database_options(parser: argparse.ArgumentParser, given_before: bool = False) -> None:
    """--database-url and --data-dir; `given_before`: the command above takes them too, and
    what was given there stands unless given again here."""
    parser.add_argument(
        "--database-url",
        default=argparse.SUPPRESS if given_before else os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (env DATABASE_URL); if unset, the embedded server of --data-dir",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS if given_before else Settings().data_dir,
        help="folder of the embedded data",
    )


def _token_commands(commands: Any) -> None:
    token = commands.add_parser("token", help="manage API tokens (operator, auditor, billing)")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token; its secret is printed once")
    create.add_argument("--role", required=True, choices=api_tokens.ROLES)
    create.add_argument("--name", help="a name to list and revoke it by (default: generated)")
    _database_options(create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    _database_options(listing)
    revoke = actions.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")
    _database_options(revoke)


def _tokens(args: argparse.Namespace) -> int:
    url = args.database_url or start_embedded(args.data_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            if args.action == "create":
                name, secret = api_tokens.create(conn, args.role, args.name)
                # The secret alone on stdout, so that T=$(csms token create ...) holds it.
                print(
                    f"created {args.role} token {name!r}; keep its secret, it is shown once:",
                    file=sys.stderr,
                )
                print(secret)
            elif args.action == "list":
                for name, role, created, revoked in api_tokens.listing(conn):
                    state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
                    print(f"{name}\t{role}\tcreated {created:%Y-%m-%d %H:%M}\t{state}")
            else:
                api_tokens.revoke(conn, args.name)
                print(f"revoked {args.name!r}")
        except api_tokens.TokenError as error:
            print(f"csms token: {error}", file=sys.stderr)
            return 2
    return 0


def _station_commands(commands: Any) -> None:
    station = commands.add_parser(
        "station", help="register stations and set their passwords (HTTP Basic authentication)"
    )
    actions = station.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", help="register a station; a password is generated and printed once"
    )
    password = actions.add_parser(
        "password", help="give a registered station a new password, printed once"
    )
    for action in (add, password):
        action.add_argument("station_id", metavar="STATION_ID")
        given = action.add_mutually_exclusive_group()
        given.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from standard input (16 to 40 printable ASCII characters) "
            "instead of generating one",
        )
        given.add_argument(
            "--no-password",
            action="store_true",
            help="no password: the station connects by its identity alone (security profile 0)",
        )
        _database_options(action)
    bulk = actions.add_parser(
        "import",
        help="register many stations from CSV lines `STATION_ID[,PASSWORD]`; those given no "
        "password get one, printed as `STATION_ID,PASSWORD`",
    )
    bulk.add_argument("file", type=argparse.FileType("r"), help="the CSV file, or - for stdin")
    bulk.add_argument(
        "--no-password",
        action="store_true",
        help="register every station without a password (the file has no password column)",
    )
    _database_options(bulk)
    remove = actions.add_parser("remove", help="forget a station's registration and password")
    remove.add_argument("station_id", metavar="STATION_ID")
    _database_options(remove)
    listing = actions.add_parser("list", help="list registered stations (never passwords)")
    _database_options(listing)


RECORDED_AT_ONCE = 1000  # changes stored as events in one commit
Change = tuple[str, CredentialsChange]  # a station, and what changed of its credentials


def _stations(args: argparse.Namespace) -> int:
    try:
        if (station_id := getattr(args, "station_id", None)) is not None:
            station_credentials.check_identity(station_id)  # before any database starts
        url = args.database_url or start_embedded(args.data_dir)
        with psycopg.connect(url, autocommit=True) as conn:
            changes = _change_stations(conn, args)
    except station_credentials.CredentialsError as error:
        print(f"csms station: {error}", file=sys.stderr)
        return 2
    try:
        _record_changes(url, changes)
    except Exception as error:
        print(
            f"csms station: the change is made, but its record in the history could not be "
            f"stored ({error})",
            file=sys.stderr,
        )
        return 1
    return 0


def _change_stations(conn: psycopg.Connection[Any], args: argparse.Namespace) -> list[Change]:
    if args.action == "list":
        for station, has_password, registered, changed in station_credentials.listing(conn):
            secret = f"password set {changed:%Y-%m-%d %H:%M}" if has_password else "none"
            print(f"{station}\tregistered {registered:%Y-%m-%d %H:%M}\t{secret}")
        return []
    if args.action == "import":
        return _import_stations(conn, args.file, args.no_password)
    if args.action == "remove":
        station_credentials.apply(conn, args.station_id, CredentialsChange.REMOVED, None)
        print(f"removed {args.station_id!r}")
        return [(args.station_id, CredentialsChange.REMOVED)]
    return [(args.station_id, _set_station_password(conn, args))]


def _record_changes(url: str, changes: list[Change]) -> None:
    """Stores each change as an event of its station: what changed, by whom, when."""
    if not changes:
        return
    app = open_store(url)
    try:
        by, at = f"cli:{_user()}", datetime.now(UTC)
        for first in range(0, len(changes), RECORDED_AT_ONCE):
            recorded = app.execute_batch(
                [
                    RecordCredentialsChange(station_id, change, by, at)
                    for station_id, change in changes[first : first + RECORDED_AT_ONCE]
                ]
            )
            if failed := [outcome for outcome in recorded if isinstance(outcome, Exception)]:
                raise failed[0]
    finally:
        app.close()


def _user() -> str:
    """Who runs this command, as the system knows them."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name, as in some containers
        return "unknown"


def _import_stations(
    conn: psycopg.Connection[Any], file: TextIO, no_password: bool
) -> list[Change]:
    stations: list[tuple[str, str | None]] = []
    generated: list[tuple[str, str]] = []
    for number, row in enumerate(csv.reader(file), start=1):
        if not row:
            continue
        station_id, *given = row
        if (
            not station_credentials.IDENTITY.match(station_id)
            or len(given) > 1
            or (no_password and given)
        ):
            raise station_credentials.CredentialsError(
                f"line {number}: expected `STATION_ID`{'' if no_password else '[,PASSWORD]'}, "
                f"a station identity of 1-48 printable characters, no `:`"
            )
        password = given[0] if given else None
        if password is None and not no_password:
            password = station_credentials.generate_password()
            generated.append((station_id, password))
        stations.append((station_id, password))
    station_credentials.register_many(conn, stations)
    csv.writer(sys.stdout).writerows(generated)
    print(
        f"registered {len(stations)} station(s); {len(generated)} password(s) generated "
        "(printed, shown once)",
        file=sys.stderr,
    )
    return [
        (station_id, CredentialsChange.of(True, password is not None))
        for station_id, password in stations
    ]


def _set_station_password(
    conn: psycopg.Connection[Any], args: argparse.Namespace
) -> CredentialsChange:
    generated = not (args.password_stdin or args.no_password)
    password: str | None = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif generated:
        password = station_credentials.generate_password()
    change = CredentialsChange.of(args.action == "add", password is not None)
    station_credentials.apply(conn, args.station_id, change, password)
    if args.action == "add":
        done = f"registered {args.station_id!r}"
    else:
        done = f"changed the password of {args.station_id!r}"
    # What was done on stderr; a generated password alone on stdout, for P=$(csms station ...).
    if password is None:
        print(f"{done}, without a password: it connects by its identity alone", file=sys.stderr)
    elif generated:
        print(
            f"{done}; its password, shown once (the station's basic auth password):",
            file=sys.stderr,
        )
        print(password)
    else:
        print(f"{done}, with the password given", file=sys.stderr)
    return change


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(getattr(args, "log_level", "WARNING"))
    if args.command == "serve":
        try:
            return serve(Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)}))
        except (PortInUse, TlsError) as error:
            print(f"csms: {error}", file=sys.stderr)
            return 1
    commands = {
        "token": _tokens,
        "station": _stations,
        "projections": _projections,
        "export": _export,
        "audit": _audit,
    }
    # Rebuilds, replays and exports hold many objects for long: collections scanning them
    # cost a rebuild a fifth of its time.
    tune_garbage_collection()
    try:
        return commands[args.command](args)
    except BrokenPipeError:  # piped into `head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
