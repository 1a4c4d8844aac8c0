"""The global sequence's append-only trigger runs only for an update it may refuse.

0005 fired ``refuse_history_rewrite()`` before every update of the sequence row, so every
append paid for a PL/pgSQL call whose SQL helper (``in_maintenance()``) is parsed and planned
again in each transaction: about a fifth of the server's CPU time for a one-event append
(``perf`` on the backend). A ``WHEN`` condition, evaluated without calling anything, now lets the
forward moves every append makes through untouched and calls the function for the others (a
move back, a changed id), which it refuses as before unless the owner declared a maintenance
step. Deletes and truncation still always reach it.

A library at 0010 behaves the same on this schema, which declares so.

Revision ID: 0011_sequence_trigger_guard
Revises: 0010_partitioned_events
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0011_sequence_trigger_guard"
down_revision: str | None = "0010_partitioned_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    table = f"{schema}.global_sequence"
    function = f"{schema}.refuse_history_rewrite()"
    op.execute(f"DROP TRIGGER global_sequence_append_only ON {table}")
    op.execute(
        f"CREATE TRIGGER global_sequence_append_only BEFORE UPDATE ON {table} FOR EACH ROW "
        "WHEN (NEW.id IS DISTINCT FROM OLD.id OR NEW.position IS NULL "
        "OR NEW.position < OLD.position) "
        f"EXECUTE FUNCTION {function}"
    )
    op.execute(
        f"CREATE TRIGGER global_sequence_no_delete BEFORE DELETE ON {table} FOR EACH ROW "
        f"EXECUTE FUNCTION {function}"
    )
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '{revision}', "
        "oldest_compatible = '0010_partitioned_events' WHERE id = 1"
    )


def downgrade() -> None:
    schema = migration_schema()
    table = f"{schema}.global_sequence"
    op.execute(f"DROP TRIGGER global_sequence_no_delete ON {table}")
    op.execute(f"DROP TRIGGER global_sequence_append_only ON {table}")
    op.execute(
        f"CREATE TRIGGER global_sequence_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_history_rewrite()"
    )
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '0010_partitioned_events', "
        "oldest_compatible = '0010_partitioned_events' WHERE id = 1"
    )
