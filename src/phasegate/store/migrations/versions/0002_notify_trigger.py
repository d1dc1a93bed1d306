"""PostgreSQL: every appended event NOTIFYs `phasegate_events` itself.

The hint (`session_id:version`) goes out when the transaction commits, from
one place, without a round trip of its own. SQLite has no NOTIFY; its
listeners poll.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOTIFY_TRIGGER = """
CREATE OR REPLACE FUNCTION phasegate_events_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('phasegate_events', NEW.session_id || ':' || NEW.version);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER events_notify AFTER INSERT ON events
FOR EACH ROW EXECUTE FUNCTION phasegate_events_notify();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
        op.execute("DROP FUNCTION IF EXISTS phasegate_events_notify()")
