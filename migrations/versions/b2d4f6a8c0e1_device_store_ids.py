"""tablet stores: the browser, the waiting interviews, a replaced store's lost work

Revision ID: b2d4f6a8c0e1
Revises: 9c1e2f3a4b5d
Create Date: 2026-11-25 10:00:00

A tablet's device id names its IndexedDB store. A store Safari deleted comes back under a new
id; these columns let the server notice that the old one's waiting changes may be lost
(interview/devices.py) and tell the coordinator once (alert lost_work).
"""

import sqlalchemy as sa
from alembic import op

revision = "b2d4f6a8c0e1"
down_revision = "9c1e2f3a4b5d"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    with op.batch_alter_table("device") as batch:
        batch.add_column(sa.Column("first_sync_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("browser_id", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("pending_interviews", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lost_at", sa.DateTime(), nullable=True))


def downgrade_():
    with op.batch_alter_table("device") as batch:
        batch.drop_column("lost_at")
        batch.drop_column("replaced_by")
        batch.drop_column("pending_interviews")
        batch.drop_column("browser_id")
        batch.drop_column("first_sync_at")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
