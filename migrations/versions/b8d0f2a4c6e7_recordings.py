"""audio recordings sealed at capture: a row per recording and per chunk; notes' offsets

Revision ID: b8d0f2a4c6e7
Revises: a7c9e1f3b5d6
Create Date: 2026-12-05 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b8d0f2a4c6e7"
down_revision = "a7c9e1f3b5d6"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_table(
        "recording",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("interview_id", sa.String(length=36), nullable=False),
        sa.Column("participant_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("mime", sa.String(length=80), nullable=False),
        sa.Column("kid", sa.String(length=16), nullable=False),
        sa.Column("wrapped_key", sa.String(length=1400), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=30), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("expected_chunks", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["interview_id"], ["interview.id"], name=op.f("fk_recording_interview_id_interview")
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_recording_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], name=op.f("fk_recording_user_id_user")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recording")),
    )
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recording_interview_id"), ["interview_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recording_participant_id"), ["participant_id"], unique=False
        )
    op.create_table(
        "recording_chunk",
        sa.Column("recording_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("start_ms", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recording.id"],
            name=op.f("fk_recording_chunk_recording_id_recording"),
        ),
        sa.PrimaryKeyConstraint("recording_id", "seq", name=op.f("pk_recording_chunk")),
    )
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("recording_offset_ms", sa.Integer(), nullable=True))


def downgrade_():
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.drop_column("recording_offset_ms")
        batch_op.drop_column("recording_id")
    op.drop_table("recording_chunk")
    with op.batch_alter_table("recording", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_participant_id"))
        batch_op.drop_index(batch_op.f("ix_recording_interview_id"))
    op.drop_table("recording")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
