"""remember the identifier guard's findings per note

Revision ID: 7a3d4e5f6b8c
Revises: 5e0a1c2d9b7f
Create Date: 2026-11-23 20:20:00

The coordinator's count of flagged notes read every sealed note on each page load; the kinds
are now kept beside the sealed text when it is written. Existing notes are checked once here.
"""

import sqlalchemy as sa
from alembic import op

revision = "7a3d4e5f6b8c"
down_revision = "5e0a1c2d9b7f"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    from interview.store.crypto import open_sealed, research_key
    from interview.store.identifiers import warning_kinds

    with op.batch_alter_table("note") as batch:
        batch.add_column(sa.Column("identifier_kinds", sa.String(length=60), nullable=True))
    bind = op.get_bind()
    notes = sa.table(
        "note",
        sa.column("id", sa.String),
        sa.column("text_enc", sa.LargeBinary),
        sa.column("identifier_kinds", sa.String),
    )
    ring = research_key()
    for row in bind.execute(sa.select(notes.c.id, notes.c.text_enc)).all():
        if row[1] is None:
            continue
        kinds = " ".join(warning_kinds(open_sealed(ring, row[1], f"note.text.{row[0]}")))
        if kinds:
            bind.execute(
                notes.update().where(notes.c.id == row[0]).values(identifier_kinds=kinds)
            )


def downgrade_():
    with op.batch_alter_table("note") as batch:
        batch.drop_column("identifier_kinds")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
