"""A human's passphrase: only its scrypt hash is kept, beside the token's hash.

In guarded mode a human decides with the token and the passphrase; the
passphrase is never stored in plaintext anywhere an agent could read it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("principals", sa.Column("passphrase_hash", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("principals") as batch:
        batch.drop_column("passphrase_hash")
