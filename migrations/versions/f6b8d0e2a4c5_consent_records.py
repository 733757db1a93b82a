"""every consent's signed record: the rendered PDF, sealed, in the identity key store

Revision ID: f6b8d0e2a4c5
Revises: e5a7c9d1f3b4
Create Date: 2026-12-05 18:40:00

The table is in the identity bind (it names the participant), so it goes with the identity
entries on a withdrawal and at the study's end.
"""

import sqlalchemy as sa
from alembic import op

revision = "f6b8d0e2a4c5"
down_revision = "e5a7c9d1f3b4"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    pass


def downgrade_():
    pass


def upgrade_identity():
    op.create_table(
        "consent_record",
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.Column("participant_id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("pdf_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("consent_id", name=op.f("pk_consent_record")),
    )
    with op.batch_alter_table("consent_record", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_record_participant_id"), ["participant_id"], unique=False
        )


def downgrade_identity():
    with op.batch_alter_table("consent_record", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_record_participant_id"))
    op.drop_table("consent_record")
