"""look up a peer's participants by the peer

Revision ID: 9c1e2f3a4b5d
Revises: 7a3d4e5f6b8c
Create Date: 2026-11-24 00:20:00

Every interview page and the interview list ask which participants a peer is assigned to; the
association's key starts with the participant, so at the study's full size that question read
the whole table.
"""

from alembic import op

revision = "9c1e2f3a4b5d"
down_revision = "7a3d4e5f6b8c"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_index(
        "ix_participant_interviewer_user_id", "participant_interviewer", ["user_id"], unique=False
    )


def downgrade_():
    op.drop_index("ix_participant_interviewer_user_id", table_name="participant_interviewer")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
