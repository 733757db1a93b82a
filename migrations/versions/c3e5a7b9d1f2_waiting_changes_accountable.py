"""waiting changes name their participant; a later refusal is told to the tablet

Revision ID: c3e5a7b9d1f2
Revises: b2d4f6a8c0e1
Create Date: 2026-12-05 14:40:00

A withdrawal used to find the changes waiting for a record by opening every waiting payload;
a change refused after it was answered `applied` (expired, withdrawn) was never told to the
tablet that sent it.
"""

import sqlalchemy as sa
from alembic import op

revision = "c3e5a7b9d1f2"
down_revision = "b2d4f6a8c0e1"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("sync_change") as batch:
        batch.add_column(sa.Column("participant_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("refused_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("told_at", sa.DateTime(), nullable=True))
        batch.create_index("ix_sync_change_participant_id", ["participant_id"], unique=False)
        batch.create_index(
            "ix_sync_change_device_refused", ["device_id", "refused_at"], unique=False
        )


def downgrade_():
    with op.batch_alter_table("sync_change") as batch:
        batch.drop_index("ix_sync_change_device_refused")
        batch.drop_index("ix_sync_change_participant_id")
        batch.drop_column("told_at")
        batch.drop_column("refused_at")
        batch.drop_column("participant_id")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
