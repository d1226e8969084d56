"""The `imbridge db` subcommands' arguments; `db migrate` itself is
`imbridge.commands.dbmigrate`, imported only when run (it brings psycopg).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="move the state database")
    dsub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    text = (
        "copy the SQLite state (bridge.state_dir/imbridge.db) into an empty PostgreSQL "
        "database, then verify the archive there; resumes an interrupted copy"
    )
    migrate = dsub.add_parser("migrate", help=text, description=text)
    migrate.add_argument(
        "-c", "--config", type=Path, required=True, metavar="FILE", help="the YAML config file"
    )
    to = migrate.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="URL", help="postgresql://USER:PASSWORD@HOST:PORT/DB")
    to.add_argument(
        "--to-file",
        type=Path,
        metavar="PATH",
        help="a file (mode 0600) holding the URL, which then stays out of `ps`",
    )
    migrate.add_argument(
        "--batch-size",
        type=int,
        metavar="ROWS",
        help="rows per transaction on the target (default 5000)",
    )


def dispatch(args: argparse.Namespace) -> int:
    from imbridge.commands.dbmigrate import db_migrate  # noqa: PLC0415 - only when asked for

    return db_migrate(args.config, to=args.to, to_file=args.to_file, batch=args.batch_size)
