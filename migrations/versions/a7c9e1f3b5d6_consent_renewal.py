"""a coordinator's decision that a consent form version needs renewed consent

Revision ID: a7c9e1f3b5d6
Revises: f6b8d0e2a4c5
Create Date: 2026-12-05 21:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "a7c9e1f3b5d6"
down_revision = "f6b8d0e2a4c5"
branch_labels = None
depends_on = None


def upgrade(engine_name):
    globals()[f"upgrade_{engine_name}"]()


def downgrade(engine_name):
    globals()[f"downgrade_{engine_name}"]()


def upgrade_():
    op.create_table(
        "consent_renewal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column("required_at", sa.DateTime(), nullable=False),
        sa.Column("required_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["consent_form_version.id"],
            name=op.f("fk_consent_renewal_form_version_id_consent_form_version"),
        ),
        sa.ForeignKeyConstraint(
            ["required_by_id"], ["user.id"], name=op.f("fk_consent_renewal_required_by_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_renewal")),
        sa.UniqueConstraint("form_version_id", name=op.f("uq_consent_renewal_form_version_id")),
    )


def downgrade_():
    op.drop_table("consent_renewal")


def upgrade_identity():
    pass


def downgrade_identity():
    pass
