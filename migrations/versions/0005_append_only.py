"""Append-only history: past events cannot be updated, deleted or truncated, and the global
sequence only moves forward, for every role, including the owner, unless the table owner
declares a maintenance step (``SET LOCAL eventuali_pg.maintenance = 'on'`` in its transaction).

Triggers rather than privileges alone: privileges do not bind the tables' owner (who runs the
migrations, and often the application), while these triggers do; a role that is not the owner
cannot lift them at all. Least-privilege grants (``eventuali-pg grant``) come on top.

Revision ID: 0005_append_only
Revises: 0004_outbox
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0005_append_only"
down_revision: str | None = "0004_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.execute(
        f"""
CREATE FUNCTION {schema}.in_maintenance() RETURNS boolean
LANGUAGE sql STABLE AS $function$
    SELECT coalesce(current_setting('eventuali_pg.maintenance', true), '') = 'on'
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class
                                      WHERE oid = '{schema}.events'::regclass), 'MEMBER')
$function$
"""
    )
    op.execute(
        f"""
CREATE FUNCTION {schema}.refuse_history_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $function$
BEGIN
    IF {schema}.in_maintenance() THEN
        RETURN CASE TG_OP WHEN 'DELETE' THEN OLD WHEN 'TRUNCATE' THEN NULL ELSE NEW END;
    END IF;
    IF TG_TABLE_NAME = 'global_sequence' AND TG_OP = 'UPDATE' THEN
        -- nested: the fields exist only on the sequence table's rows
        IF NEW.id = OLD.id AND NEW.position >= OLD.position THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'event history is append-only: % on %.% is refused', TG_OP,
        TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'events are never updated or deleted, and the global sequence only moves '
                  || 'forward; a maintenance step by the tables'' owner runs in a transaction '
                  || 'that first does SET LOCAL eventuali_pg.maintenance = ''on''';
END
$function$
"""
    )
    for table in ("events", "global_sequence"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {schema}.{table} "
            f"FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_history_rewrite()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {schema}.{table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_history_rewrite()"
        )


def downgrade() -> None:
    schema = migration_schema()
    for table in ("events", "global_sequence"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {schema}.{table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {schema}.{table}")
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.refuse_history_rewrite()")
    op.execute(f"DROP FUNCTION IF EXISTS {schema}.in_maintenance()")
