"""Each session keeps the fix budget of the configuration it started with.

The rest of that configuration lives in the session's context; the budget is
a column so lists show "2/2" without reading any context. Sessions from before
keep None: their workflow's budget, as before.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("max_fix_attempts", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("max_fix_attempts")
