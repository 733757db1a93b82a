"""remember the identifier guard's findings for event comments and debrief reflections;
find one participant's audit rows by their object

Revision ID: e5a7c9d1f3b4
Revises: d4f6b8c0e2a3
Create Date: 2026-12-05 19:00:00

The guard checked only notes; the comment of a stop or distress event and a debrief's
reflection are free text a person types too. Their kinds are kept beside the sealed text as
for notes (and counted on the alerts page from partial indexes of only the flagged rows).
Existing rows are checked once here. The audit log screen filters by participant: an index
of audit_event's object (type and id) finds their rows without reading the whole log.
"""

import sqlalchemy as sa
from alembic import op

revision = "e5a7c9d1f3b4"
down_revision = "d4f6b8c0e2a3"
branch_labels = None
depends_on = None

# table -> (its sealed free-text column, the field named in the sealed value's context, index)
TABLES = {
    "interview_event": ("comment_enc", "comment", "ix_interview_event_flagged"),
    "debrief": ("reflection_enc", "reflection", "ix_debrief_flagged"),
}
WHERE = "identifier_kinds IS NOT NULL"


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    from interview.store.crypto import open_sealed, research_key
    from interview.store.identifiers import warning_kinds

    bind = op.get_bind()
    ring = None
    for table, (column, field, index) in TABLES.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("identifier_kinds", sa.String(length=60), nullable=True))
        rows = sa.table(
            table,
            sa.column("id", sa.String),
            sa.column(column, sa.LargeBinary),
            sa.column("identifier_kinds", sa.String),
        )
        for row_id, blob in bind.execute(
            sa.select(rows.c.id, rows.c[column]).where(rows.c[column].is_not(None))
        ).all():
            ring = ring or research_key()
            kinds = " ".join(warning_kinds(open_sealed(ring, blob, f"{table}.{field}.{row_id}")))
            if kinds:
                bind.execute(
                    rows.update().where(rows.c.id == row_id).values(identifier_kinds=kinds)
                )
        op.create_index(
            index,
            table,
            ["interview_id"],
            unique=False,
            sqlite_where=sa.text(WHERE),
            postgresql_where=sa.text(WHERE),
        )
    op.create_index(
        "ix_audit_event_object", "audit_event", ["object_type", "object_id"], unique=False
    )


def downgrade_():
    op.drop_index("ix_audit_event_object", table_name="audit_event")
    for table, (_column, _field, index) in TABLES.items():
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("identifier_kinds")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
