"""Validation of SQL identifiers that come from configuration (schema and channel names)."""

from __future__ import annotations

import re

from .errors import ConfigurationError

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MAX_IDENTIFIER_BYTES = 63


def validate_identifier(value: object, *, what: str) -> str:
    """Return ``value`` if it is a safe, unquoted PostgreSQL identifier; raise otherwise.

    Only lower-case letters, digits and underscores are accepted, starting with a letter or an
    underscore, at most 63 bytes, so the name can be spliced into SQL without quoting surprises.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigurationError(
            f"invalid {what} {value!r}: use 1 to {_MAX_IDENTIFIER_BYTES} lower-case letters, "
            "digits or underscores, starting with a letter or underscore (e.g. 'eventuali')"
        )
    if value.startswith("pg_"):
        raise ConfigurationError(
            f"invalid {what} {value!r}: names starting with 'pg_' are reserved by PostgreSQL"
        )
    return value
