"""What the writer and the reader role may do, object by object: the one place that decides.

:func:`eventuali_pg.roles.grant_roles` applies this to every object it finds in the store's
schema (the catalog, not a list kept here), so a table a later migration adds is covered by
:data:`OTHER_TABLES` until it gets a line of its own in :data:`TABLES`. Nothing here talks to
the database.

The rules:

* history (``events``) is appended, never changed: the writer has INSERT and SELECT, no UPDATE
  or DELETE (the append-only triggers of revision 0005 refuse those even to the owner);
* the global counter row only moves forward: the writer has SELECT and UPDATE;
* ``pending_events`` (the outbox of a caller's transaction) holds rows in flight: the writer
  inserts them and the commit trigger, running as the writer, reads and deletes them; readers
  never see such rows, so they get nothing;
* checkpoints, dead letters, projection versions: the writer's projections own them (all DML);
* the revision tables are read by every role when a store opens;
* the reader has SELECT on everything it can see, nothing else;
* neither role may CREATE in the schema, TRUNCATE, or hold REFERENCES or TRIGGER: migrations
  (and :func:`grant_roles` itself) run as the owner.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..store.revision import COMPATIBILITY_TABLE, VERSION_TABLE

__all__ = [
    "DATABASE_PRIVILEGES",
    "FUNCTION_PRIVILEGES",
    "OTHER_TABLES",
    "SCHEMA_PRIVILEGES",
    "SEQUENCE_PRIVILEGES",
    "TABLES",
    "ObjectPrivileges",
    "table_privileges",
]

SELECT = ("SELECT",)
ALL_DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class ObjectPrivileges:
    """The privileges each role gets on one object, and why."""

    writer: tuple[str, ...]
    reader: tuple[str, ...]
    why: str

    def of(self, kind: str) -> tuple[str, ...]:
        """The privileges of role ``kind`` (``"writer"`` or ``"reader"``)."""
        return self.writer if kind == "writer" else self.reader


#: The tables this release knows, by name (in the store's schema).
TABLES: dict[str, ObjectPrivileges] = {
    "events": ObjectPrivileges(
        ("SELECT", "INSERT"), SELECT, "history: appended, never updated or deleted"
    ),
    "global_sequence": ObjectPrivileges(
        ("SELECT", "UPDATE"), SELECT, "the counter row: only moves forward"
    ),
    "streams": ObjectPrivileges(
        ("SELECT", "INSERT", "UPDATE"), SELECT, "each aggregate's version (concurrency check)"
    ),
    "pending_events": ObjectPrivileges(
        ("SELECT", "INSERT", "DELETE"),
        (),
        "events of open transactions: the commit trigger moves them into events as the writer",
    ),
    "snapshots": ObjectPrivileges(
        ALL_DML, SELECT, "replaced in place; deleted when their data subject is forgotten"
    ),
    "subject_keys": ObjectPrivileges(
        ("SELECT", "INSERT", "UPDATE"),
        SELECT,
        "personal fields' keys: created by saves, destroyed (set to NULL) by forget; readers "
        "decrypt with them",
    ),
    "event_ids": ObjectPrivileges(
        ("SELECT", "INSERT"), SELECT, "partitioned stores: each event id once, append-only"
    ),
    "event_partitioning": ObjectPrivileges(
        SELECT, SELECT, "partition layout; extended by an owner's function the writer calls"
    ),
    "group_members": ObjectPrivileges(ALL_DML, SELECT, "elastic consumer groups' members"),
    "group_partitions": ObjectPrivileges(ALL_DML, SELECT, "elastic groups' partition leases"),
    "checkpoints": ObjectPrivileges(ALL_DML, SELECT, "projections' positions"),
    "dead_letters": ObjectPrivileges(ALL_DML, SELECT, "events projections parked"),
    "projection_versions": ObjectPrivileges(ALL_DML, SELECT, "projection versions"),
    VERSION_TABLE: ObjectPrivileges(SELECT, SELECT, "read when a store opens; owner migrates"),
    COMPATIBILITY_TABLE: ObjectPrivileges(
        SELECT, SELECT, "read when a store opens; owner migrates"
    ),
}

#: Any other table (or view) in the schema, e.g. one a later migration added: the writer may
#: change its rows, the reader may read them. Give it a line in TABLES when that is too much.
OTHER_TABLES = ObjectPrivileges(ALL_DML, SELECT, "not known to this release")

#: Sequences in the schema (none is used by name today; an identity column needs none).
SEQUENCE_PRIVILEGES = ObjectPrivileges(("USAGE", "SELECT"), (), "values for new rows")

#: Functions in the schema: the trigger functions and what they call run as the writer.
FUNCTION_PRIVILEGES = ObjectPrivileges(("EXECUTE",), (), "trigger functions run as the writer")

#: The schema itself: look up its objects; never CREATE.
SCHEMA_PRIVILEGES = ObjectPrivileges(("USAGE",), ("USAGE",), "find the store's objects")

#: The database: connect (LISTEN needs nothing more).
DATABASE_PRIVILEGES = ObjectPrivileges(("CONNECT",), ("CONNECT",), "connect, LISTEN")


def table_privileges(name: str) -> ObjectPrivileges:
    """The privileges of the table (or view) ``name`` of the store's schema."""
    return TABLES.get(name, OTHER_TABLES)
