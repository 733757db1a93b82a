"""seal note and debrief text and sync payloads at rest

Revision ID: 5e0a1c2d9b7f
Revises: 84141d2128d1
Create Date: 2026-11-23 18:45:00

Adds the sealed columns, seals every existing value with the research key ring
(RESEARCH_KEY / RESEARCH_KEY_FILE) and drops the plain columns. The downgrade opens them again.
"""

import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "5e0a1c2d9b7f"
down_revision = "84141d2128d1"
branch_labels = None
depends_on = None

# table, primary key, plain column, sealed column, JSON or text
FIELDS = [
    ("note", "id", "text", "text_enc", False),
    ("note", "id", "conflict", "conflict_enc", True),
    ("debrief", "id", "reflection", "reflection_enc", False),
    ("debrief", "id", "conflict", "conflict_enc", True),
    ("sync_change", "change_id", "payload", "payload_enc", True),
]


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def _ring():
    from interview.store.crypto import research_key

    return research_key()


def _table(name, pk, columns):
    return sa.table(name, sa.column(pk, sa.String), *[sa.column(c, t) for c, t in columns])


def upgrade_():
    from interview.store.crypto import seal

    for table in ("note", "debrief", "sync_change"):
        with op.batch_alter_table(table) as batch:
            for t, _pk, _plain, enc, _js in FIELDS:
                if t == table:
                    batch.add_column(sa.Column(enc, sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    ring = _ring()
    for table, pk, plain, enc, as_json in FIELDS:
        kind = sa.JSON() if as_json else sa.Text()
        rows = _table(table, pk, [(plain, kind), (enc, sa.LargeBinary())])
        for row in bind.execute(sa.select(rows.c[pk], rows.c[plain])).all():
            value = row[1]
            if value is None:
                continue
            text = json.dumps(value, ensure_ascii=False, sort_keys=True) if as_json else value
            bind.execute(
                rows.update()
                .where(rows.c[pk] == row[0])
                .values({enc: seal(ring, text, f"{table}.{plain}.{row[0]}")})
            )
    for table in ("note", "debrief", "sync_change"):
        with op.batch_alter_table(table) as batch:
            for t, _pk, plain, _enc, _js in FIELDS:
                if t == table:
                    batch.drop_column(plain)
    with op.batch_alter_table("interview_event") as batch:
        batch.add_column(sa.Column("comment_enc", sa.LargeBinary(), nullable=True))
    _events(seal_them=True)


def downgrade_():
    from interview.store.crypto import open_sealed

    _events(seal_them=False)
    with op.batch_alter_table("interview_event") as batch:
        batch.drop_column("comment_enc")

    for table in ("note", "debrief", "sync_change"):
        with op.batch_alter_table(table) as batch:
            for t, _pk, plain, _enc, as_json in FIELDS:
                if t == table:
                    kind = sa.JSON() if as_json else sa.Text()
                    batch.add_column(sa.Column(plain, kind, nullable=True))
    bind = op.get_bind()
    ring = _ring()
    for table, pk, plain, enc, as_json in FIELDS:
        kind = sa.JSON() if as_json else sa.Text()
        rows = _table(table, pk, [(plain, kind), (enc, sa.LargeBinary())])
        for row in bind.execute(sa.select(rows.c[pk], rows.c[enc])).all():
            if row[1] is None:
                continue
            text = open_sealed(ring, row[1], f"{table}.{plain}.{row[0]}")
            bind.execute(
                rows.update()
                .where(rows.c[pk] == row[0])
                .values({plain: json.loads(text) if as_json else text})
            )
    for table, _pk, plain, _enc, as_json in FIELDS:
        if not as_json:
            # these were NOT NULL, with '' for no words
            rows = _table(table, _pk, [(plain, sa.Text())])
            bind.execute(rows.update().where(rows.c[plain].is_(None)).values({plain: ""}))
    for table in ("note", "debrief", "sync_change"):
        with op.batch_alter_table(table) as batch:
            for t, _pk, plain, enc, _js in FIELDS:
                if t == table:
                    batch.drop_column(enc)
                    if plain in ("text", "reflection"):
                        batch.alter_column(plain, existing_type=sa.Text(), nullable=False)


def _events(seal_them: bool) -> None:
    """Move stop and distress comments from the plain event details into a sealed column."""
    from interview.store.crypto import open_sealed, seal

    bind = op.get_bind()
    ring = _ring()
    events = _table(
        "interview_event", "id", [("data", sa.JSON()), ("comment_enc", sa.LargeBinary())]
    )
    for row in bind.execute(sa.select(events.c.id, events.c.data, events.c.comment_enc)).all():
        ctx = f"interview_event.comment.{row[0]}"
        data = dict(row[1] or {})
        if seal_them and "comment" in data:
            comment = data.pop("comment")
            blob = seal(ring, comment, ctx) if comment else None
            bind.execute(
                events.update().where(events.c.id == row[0]).values(data=data, comment_enc=blob)
            )
        elif not seal_them and row[2] is not None:
            data["comment"] = open_sealed(ring, row[2], ctx)
            bind.execute(events.update().where(events.c.id == row[0]).values(data=data))


def upgrade_identity():
    pass


def downgrade_identity():
    pass
