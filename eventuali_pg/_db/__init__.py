"""The database layer: the only package that imports asyncpg.

* :mod:`.connector` opens connections by role: the pool for statements, direct sessions for
  LISTEN and session locks;
* :mod:`.errors` turns driver failures into the library's error tree, in one place;
* :mod:`.session` watches and closes direct sessions.
"""

from .connector import APPLICATION_NAME, Connection, Connector, Pool, Record
from .errors import (
    ServerError,
    database_errors,
    is_lost_connection,
    missing_partition,
    privilege_errors,
    server_detail,
    translate,
    unique_violation,
)
from .session import close_or_terminate, watch_connection

__all__ = [
    "APPLICATION_NAME",
    "Connection",
    "Connector",
    "Pool",
    "Record",
    "ServerError",
    "close_or_terminate",
    "database_errors",
    "is_lost_connection",
    "missing_partition",
    "privilege_errors",
    "server_detail",
    "translate",
    "unique_violation",
    "watch_connection",
]
