"""the alerts page finds the notes in conflict and the flagged ones without walking every note

Revision ID: d4f6b8c0e2a3
Revises: c3e5a7b9d1f2
Create Date: 2026-12-05 18:00:00

Partial indexes: only the notes with a second version waiting, or with the identifier guard's
findings, are in them (a few hundred among a study's 100,000 notes).
"""

import sqlalchemy as sa
from alembic import op

revision = "d4f6b8c0e2a3"
down_revision = "c3e5a7b9d1f2"
branch_labels = None
depends_on = None

INDEXES = {
    "ix_note_conflict": "conflict_enc IS NOT NULL",
    "ix_note_flagged": "identifier_kinds IS NOT NULL",
}


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    for name, where in INDEXES.items():
        op.create_index(
            name,
            "note",
            ["interview_id"],
            unique=False,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade_():
    for name in INDEXES:
        op.drop_index(name, table_name="note")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
