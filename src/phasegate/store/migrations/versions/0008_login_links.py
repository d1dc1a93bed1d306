"""One-time login links: a short-lived, single-use code (stored hashed) for one human.

`phasegate demo` and `phasegate login-link` print a link that logs its human
into the dashboard once; the server exchanges the code for the usual cookie.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UtcDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "login_links",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("principal_id", sa.String(32), sa.ForeignKey("principals.id"), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("login_links")
