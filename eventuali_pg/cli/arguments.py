"""Building blocks of the ``eventuali-pg`` parser: the parser class, value types of options,
and the helper that adds one command. Nothing heavy is imported here."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, NoReturn

# Set on the namespace of every command: "module:function" under eventuali_pg.cli.
HANDLER = "handler"


class UsageError(Exception):
    """A combination of arguments that makes no sense; reported like argparse errors (exit 2)."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr (no usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``<prog>: error: <message>`` and a pointer to ``--help``; exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[Parser]


#: The largest global position: PostgreSQL's bigint.
MAX_POSITION = 2**63 - 1
#: The largest count (--limit and the like): one more row than asked is read to tell whether
#: more follow, and that must still be a bigint.
MAX_COUNT = MAX_POSITION - 1


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_COUNT}, got {value}")
    return value


def position_arg(text: str) -> int:
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


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_COUNT}, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def schema_name(text: str) -> str:
    from .._identifiers import validate_identifier
    from ..errors import ConfigurationError

    try:
        return validate_identifier(text, what="schema name")
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("invalid schema name ")) from None


def non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def projection_spec(text: str) -> str:
    module, _, attribute = text.partition(":")
    parts = [*module.split("."), *attribute.split(".")]
    if not module or not attribute or not all(part.isidentifier() for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected module:attribute (like myapp.projections:OrderSummary), got {text!r}"
        )
    return text


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 1 to 65535, got {value}")
    return value


def projection_for(text: str) -> str:
    subscription, sep, spec = text.partition("=")
    if not sep or not subscription.strip():
        raise argparse.ArgumentTypeError(
            f"expected SUBSCRIPTION=module:attribute (like orders=myapp.views:Orders), got {text!r}"
        )
    return f"{subscription.strip()}={projection_spec(spec)}"


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def examples(*lines: str) -> str:
    return "examples:\n" + textwrap.indent("\n".join(lines), "  ")


def database_options(*, with_schema: bool = True) -> Parser:
    parent = Parser(add_help=False)
    group = parent.add_argument_group("database")
    # SUPPRESS: an option given before the command (eventuali-pg --dsn URL status) is kept.
    group.add_argument(
        "--dsn",
        metavar="URL",
        type=non_empty,
        default=argparse.SUPPRESS,
        help="PostgreSQL URL (default: EVENTUALI_PG_DSN, DATABASE_URL, else the embedded server)",
    )
    if with_schema:
        group.add_argument(
            "--schema",
            metavar="NAME",
            type=schema_name,
            default=argparse.SUPPRESS,
            help="PostgreSQL schema of the event store (default: eventuali)",
        )
    return parent


def add_command(
    commands: Commands,
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
    handler: str,
    parents: list[Parser],
) -> Parser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        parents=parents,
        formatter_class=Formatter,
    )
    parser.set_defaults(**{HANDLER: handler})
    return parser


