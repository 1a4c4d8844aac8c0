"""Subject keys: one AES-256-GCM key per data subject, for erasure by forgetting the key.

Personal payload fields are stored encrypted with the key of their subject (generation
``generation`` of it). ``EventStore.forget`` keeps the row as a tombstone (``key`` NULL,
``forgotten_at`` set) so that later writes of personal data for the subject are refused
until a new key (the next generation) is asked for. Usable by a 0007 library (it ignores the
table), which the compatibility row declares.

Revision ID: 0008_subject_keys
Revises: 0007_projection_versions
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from eventuali_pg.migration import migration_schema

revision: str = "0008_subject_keys"
down_revision: str | None = "0007_projection_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    schema = migration_schema()
    op.create_table(
        "subject_keys",
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("forgotten_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name="subject_keys_pkey"),
        sa.CheckConstraint(
            "(key IS NULL) = (forgotten_at IS NOT NULL)", name="subject_keys_key_or_tombstone"
        ),
        sa.CheckConstraint(
            "key IS NULL OR octet_length(key) = 32", name="subject_keys_key_length"
        ),
        sa.CheckConstraint("generation >= 1", name="subject_keys_generation_positive"),
        schema=schema,
    )
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '{revision}', "
        "oldest_compatible = '0007_projection_versions' WHERE id = 1"
    )


def downgrade() -> None:
    schema = migration_schema()
    op.drop_table("subject_keys", schema=schema)
    op.execute(
        f"UPDATE {schema}.schema_compatibility SET revision = '0007_projection_versions', "
        "oldest_compatible = '0006_snapshots' WHERE id = 1"
    )
