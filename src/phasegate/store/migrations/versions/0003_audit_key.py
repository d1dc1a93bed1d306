"""The `meta` table: the database's random id, which names its audit key, and the key's records.

Events from now on are chained with an HMAC under a key kept outside the
database; the id lets each process find that key. Like the events, `meta`
rows are never updated or deleted.

Revision ID: 0003
Revises: 0002
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

INSERT_ONLY_SQLITE = """
CREATE TRIGGER meta_no_{op} BEFORE {op} ON meta
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END
"""
# Reuses 0001's function, which raises 'the audit log is append-only'.
INSERT_ONLY_PG = """
CREATE TRIGGER meta_append_only BEFORE UPDATE OR DELETE ON meta
FOR EACH ROW EXECUTE FUNCTION phasegate_events_append_only();
"""


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(meta, [{"name": "database_id", "value": uuid.uuid4().hex}])
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(INSERT_ONLY_SQLITE.format(op=verb))
    else:
        op.execute(INSERT_ONLY_PG)


def downgrade() -> None:
    op.drop_table("meta")  # its triggers go with it
