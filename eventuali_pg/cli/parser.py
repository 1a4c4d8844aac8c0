"""The argument parser of ``eventuali-pg``: commands, options, help texts and examples.

Nothing heavy is imported here, so ``--help`` and argument errors answer fast. Each command
names its handler as ``"module:function"``; :func:`eventuali_pg.cli.main` imports it only when
the command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .arguments import (
    HANDLER,
    MAX_COUNT,
    MAX_POSITION,
    Formatter,
    Parser,
    UsageError,
    add_command,
    count_arg,
    database_options,
    examples,
    non_empty,
    non_negative_float,
    position_arg,
    positive_int,
    schema_name,
)
from .parser_operations import add_console, add_dead_letters, add_server
from .servers import add_server_options

if TYPE_CHECKING:
    from .arguments import Commands

__all__ = ["HANDLER", "MAX_COUNT", "MAX_POSITION", "PROG", "UsageError", "build_parser"]

PROG = "eventuali-pg"

EXIT_CODES = """\
exit codes:
  0    success
  1    error: database unreachable, schema missing, any eventuali-pg error (one line on stderr)
  2    bad usage: unknown command or option, invalid value
  3    check failed: `status --check` found the store unhealthy; `demo` found a subscriber
       that did not receive exactly what it should;
       `server status` / `server url` when the embedded server is not running;
       `dead-letters show/discard/retry` when no such event is parked, `retry` when the
       handler failed again
  130  interrupted by Ctrl-C (SIGINT); 143 when stopped by SIGTERM
  A closed output pipe (`eventuali-pg tail --json | head -n 3`) ends the command with 0."""

DATABASE_HELP = """\
database:
  --dsn URL, else EVENTUALI_PG_DSN, else DATABASE_URL, else the embedded PostgreSQL server
  (pip install 'eventuali-pg[embedded]'), which keeps its data in a per-user folder
  (EVENTUALI_PG_DATA_DIR overrides it) and is migrated automatically."""

DESCRIPTION = """\
Command line of eventuali-pg, an asyncio event store on PostgreSQL.

commands:
  migrate       create or upgrade the event store schema (alembic), print its SQL or version
  grant         give existing roles least privileges: a writer and/or a reader (as the owner)
  demo          the product in one minute: writers, filtered live subscribers, a summary
  tail          follow new events live, like `tail -f`
  status        head position, write rate, subscription lag, connected listeners
  events        read a range of events or one aggregate's history
  dead-letters  list, show, retry or discard the events projections parked
  console       the web console: dashboard, events, live tail, projections, dead letters
  forget        erase a data subject's personal fields by destroying its key
  server        start, stop or locate the embedded PostgreSQL server

Run `eventuali-pg COMMAND --help` for the options and an example of each command."""



def build_parser() -> Parser:
    """The ``eventuali-pg`` argument parser with every command."""
    parser = Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=f"{DATABASE_HELP}\n\n{EXIT_CODES}",
        formatter_class=Formatter,
    )
    parser.add_argument(
        "--dsn", metavar="URL", type=non_empty, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--schema", metavar="NAME", type=schema_name, default="eventuali", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on unexpected errors"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    database = database_options()
    _add_migrate(commands, database)
    _add_grant(commands, database)
    _add_demo(commands, database)
    _add_tail(commands, database)
    _add_status(commands, database)
    _add_events(commands, database)
    add_dead_letters(commands, database)
    add_console(commands, database)
    _add_forget(commands, database)
    add_server(commands)
    return parser


def _add_migrate(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "migrate",
        summary="create or upgrade the schema; --sql prints it, `current` shows the version",
        description=(
            "Upgrade the event store schema to the newest revision with the alembic migrations\n"
            "shipped in the package (safe to run again, and from several processes at once).\n"
            "`migrate current` (or --current) prints the revision the database is at;\n"
            "--sql prints the SQL of the whole upgrade instead of running it (no database needed)."
        ),
        epilog=examples(
            "eventuali-pg migrate --dsn postgresql://app@db.example.com/app",
            "eventuali-pg migrate current",
            "eventuali-pg migrate --sql --schema events > schema.sql",
            "eventuali-pg migrate --partition-size 1000000",
        ),
        handler="migrate:run",
        parents=[database],
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=["current"],
        help="`current`: print the revision the database is at",
    )
    parser.add_argument(
        "--current", dest="show_current", action="store_true", help="same as `migrate current`"
    )
    parser.add_argument(
        "--sql", action="store_true", help="print the SQL of the upgrade instead of running it"
    )
    parser.add_argument("--json", action="store_true", help="with `current`: print JSON")
    parser.add_argument(
        "--partition-size",
        type=positive_int,
        metavar="N",
        help="partition the events table by global_position, N events per partition (a new "
        "store, or an existing one converted in place; the size cannot change later)",
    )


def _add_grant(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "grant",
        summary="give existing roles least privileges: --writer ROLE and/or --reader ROLE",
        description=(
            "Connected as the schema's owner (who runs the migrations), grant existing roles\n"
            "what they need on every object of the schema, and no more: the writer appends,\n"
            "reads, streams and runs projections (checkpoints, dead letters); the reader reads\n"
            "and streams. Neither can change past events or create objects. Run it again after\n"
            "every `migrate`: it covers the objects that exist when it runs."
        ),
        epilog=examples(
            "eventuali-pg grant --writer app_writer --reader app_reader "
            "--dsn postgresql://owner@db/app",
            "eventuali-pg grant --reader reporting --schema events --json",
        ),
        handler="grant:run",
        parents=[database],
    )
    parser.add_argument("--writer", metavar="ROLE", type=non_empty, default=None)
    parser.add_argument("--reader", metavar="ROLE", type=non_empty, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_demo(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "demo",
        summary="the product in one minute: writers, filtered subscribers, live view, summary",
        description=(
            "Create the schema, start concurrent writers and several filtered subscribers, and\n"
            "show live what each receives:\n"
            "  everything   every event, live\n"
            "  orders       aggregate type Order\n"
            "  shipping     event type OrderShipped\n"
            "  late-joiner  aggregate type Customer, subscribed midway with from_position set to\n"
            "               where the demo started: catches up from the table, then goes live\n"
            "  slow         every event, deliberately slow, with a buffer of --slow-capacity\n"
            "               events: it overflows, catches up from the table and rejoins\n"
            "Then it checks that each subscriber received exactly the events it should (in\n"
            "order, none missing, none twice) and prints a summary with the latency from save()\n"
            "returning in the writer to the subscriber receiving the event. Exit code 3 if a\n"
            "check fails. Runs on the embedded server unless a DSN is given."
        ),
        epilog=examples(
            "eventuali-pg demo",
            "eventuali-pg demo --events 20000 --rate 0 --dsn postgresql://postgres@localhost/demo",
            "eventuali-pg demo --events 200 --json | jq .ok",
        ),
        handler="demo:run",
        parents=[database],
    )
    parser.add_argument(
        "--events", type=positive_int, default=3000, metavar="N", help="events to write (3000)"
    )
    parser.add_argument(
        "--writers", type=positive_int, default=4, metavar="N", help="concurrent writers (4)"
    )
    parser.add_argument(
        "--rate",
        type=non_negative_float,
        default=600.0,
        metavar="PER_SECOND",
        help="events per second over all writers; 0 writes as fast as possible (600)",
    )
    parser.add_argument(
        "--slow-capacity",
        type=positive_int,
        default=8,
        metavar="N",
        help="buffer size of the slow subscriber (8)",
    )
    parser.add_argument(
        "--json", action="store_true", help="no live view; print the summary as one JSON object"
    )


def _filter_options(parser: Parser) -> None:
    group = parser.add_argument_group("filters (repeat an option to accept several values)")
    group.add_argument(
        "--aggregate-type", action="append", type=non_empty, metavar="TYPE", default=None
    )
    group.add_argument(
        "--event-type", action="append", type=non_empty, metavar="TYPE", default=None
    )
    group.add_argument("--aggregate-id", type=non_empty, metavar="ID", default=None)


def _add_tail(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "tail",
        summary="follow new events live, like `tail -f` (--json for one object per line)",
        description=(
            "Print events as they are saved, by any process, in global order. Starts at the\n"
            "head (only new events) unless --from POSITION is given, in which case every event\n"
            "after that position is printed first. Stops on Ctrl-C (exit 130), after --limit\n"
            "events (exit 0), or when the reading end of a pipe closes (exit 0)."
        ),
        epilog=examples(
            "eventuali-pg tail",
            "eventuali-pg tail --from 0 --aggregate-type Order --event-type OrderShipped",
            "eventuali-pg tail --json --aggregate-id order-42 | jq .payload",
            "eventuali-pg tail --json --limit 1   # wait for the next event",
        ),
        handler="tail:run",
        parents=[database],
    )
    add_server_options(parser)
    parser.add_argument(
        "--from",
        dest="from_position",
        type=position_arg,
        default=None,
        metavar="POSITION",
        help="print every event after this global position first (0: from the beginning)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="stop after N events"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    _filter_options(parser)


def _add_status(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "status",
        summary="head position, write rate, subscription checkpoints and lag, listeners",
        description=(
            "Show the head (highest global position), events recorded per second over the last\n"
            "minute, each durable subscription's checkpoint and lag (head - checkpoint, the\n"
            "exact number of events it still has to process), dead-letter counts when the\n"
            "schema has a dead-letter table, and the eventuali-pg connections to the database\n"
            "(LISTEN connections counted apart when they identify themselves)."
        ),
        epilog=examples(
            "eventuali-pg status",
            "eventuali-pg status --json | jq .head",
            "eventuali-pg status --check --max-lag 1000   # a container probe: exit 3 if unhealthy",
        ),
        handler="status:run",
        parents=[database],
    )
    add_server_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also open a store with a LISTEN connection and check its health; exit 3 if "
        "unhealthy (1 if the database is unreachable)",
    )
    parser.add_argument(
        "--max-lag",
        type=count_arg,
        default=None,
        metavar="N",
        help="with --check: a subscription more than N events behind the head is unhealthy",
    )


def _add_events(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "events",
        summary="read a range of events, or one aggregate's history (table or --json)",
        description=(
            "Print stored events: those after global position --from (default 0), at most\n"
            "--limit of them, or with --aggregate-id the history of one aggregate, oldest first.\n"
            "Prints a table, or with --json one JSON object per line."
        ),
        epilog=examples(
            "eventuali-pg events --from 100 --limit 20",
            "eventuali-pg events --aggregate-id order-42",
            "eventuali-pg events --event-type OrderShipped --json | jq -c .payload",
        ),
        handler="events:run",
        parents=[database],
    )
    add_server_options(parser)
    parser.add_argument(
        "--from",
        dest="from_position",
        type=position_arg,
        default=0,
        metavar="POSITION",
        help="events after this global position (0)",
    )
    parser.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="at most N events (50)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    _filter_options(parser)


def _add_forget(commands: Commands, database: Parser) -> None:
    parser = add_command(
        commands,
        "forget",
        summary="erase a data subject's personal fields by destroying its key (irreversible)",
        description=(
            "Destroy the key of SUBJECT (crypto-shredding): its personal fields read as\n"
            "[erased] on every read path from now on; events, positions and checkpoints stay.\n"
            "Appends a SubjectForgotten event (projections' on_forget). Needs --yes."
        ),
        epilog=examples("eventuali-pg forget customer-42 --yes"),
        handler="forget:run",
        parents=[database],
    )
    parser.add_argument("subject", type=non_empty, metavar="SUBJECT", help="the subject id")
    parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


