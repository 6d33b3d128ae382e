"""queue scale: partial indexes over live and failed inputs, counts kept by a trigger

Revision ID: 0007_queue_scale
Revises: 0006_operations

The claim, the renewal and the queue's counts must cost the same with ten million
finished inputs as with a thousand: claims walk a partial index of the live (queued and
processing) inputs in id order, the latest failure is one step down a partial index of
the failed ones, the oldest queued one is the first of a partial index by ``queued_at``,
and the counts per status and reason are kept in ``input_tallies`` by a trigger on
``inputs`` (deltas appended in the inserting or updating transaction, folded now and
then by the workers). A later migration that rebuilds ``inputs`` on SQLite (batch mode
copies the table) must create these triggers again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0007_queue_scale"
down_revision = "0006_operations"
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'processing')"
FAILED = "status = 'failed'"
QUEUED = "status = 'queued'"

PG_FUNCTION = """
CREATE FUNCTION input_tallies_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO input_tallies (status, reason, delta) VALUES (OLD.status, OLD.reason, -1);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO input_tallies (status, reason, delta) VALUES (NEW.status, NEW.reason, 1);
    END IF;
    RETURN NULL;
END
$$
"""
PG_TRIGGERS = (
    "CREATE TRIGGER input_tallies_insert_delete AFTER INSERT OR DELETE ON inputs"
    " FOR EACH ROW EXECUTE FUNCTION input_tallies_count()",
    "CREATE TRIGGER input_tallies_update AFTER UPDATE OF status, reason ON inputs"
    " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status"
    " OR OLD.reason IS DISTINCT FROM NEW.reason) EXECUTE FUNCTION input_tallies_count()",
)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER input_tallies_insert AFTER INSERT ON inputs BEGIN"
    " INSERT INTO input_tallies (status, reason, delta) VALUES (NEW.status, NEW.reason, 1);"
    " END",
    "CREATE TRIGGER input_tallies_delete AFTER DELETE ON inputs BEGIN"
    " INSERT INTO input_tallies (status, reason, delta) VALUES (OLD.status, OLD.reason, -1);"
    " END",
    "CREATE TRIGGER input_tallies_update AFTER UPDATE OF status, reason ON inputs"
    " WHEN OLD.status IS NOT NEW.status OR OLD.reason IS NOT NEW.reason BEGIN"
    " INSERT INTO input_tallies (status, reason, delta)"
    " VALUES (OLD.status, OLD.reason, -1), (NEW.status, NEW.reason, 1);"
    " END",
)


def upgrade() -> None:
    op.create_table(
        "input_tallies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_input_tallies")),
    )
    # the inputs already there, counted once
    op.execute(
        "INSERT INTO input_tallies (status, reason, delta)"
        " SELECT status, reason, count(*) FROM inputs GROUP BY status, reason"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for statement in PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
    op.create_index(
        "ix_inputs_active",
        "inputs",
        ["id"],
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    op.create_index(
        "ix_inputs_queued_at",
        "inputs",
        ["queued_at"],
        postgresql_where=sa.text(QUEUED),
        sqlite_where=sa.text(QUEUED),
    )
    op.create_index(
        "ix_inputs_failed",
        "inputs",
        ["finished_at", "id"],
        postgresql_where=sa.text(FAILED),
        sqlite_where=sa.text(FAILED),
    )


def downgrade() -> None:
    op.drop_index("ix_inputs_failed", table_name="inputs")
    op.drop_index("ix_inputs_queued_at", table_name="inputs")
    op.drop_index("ix_inputs_active", table_name="inputs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS input_tallies_update ON inputs")
        op.execute("DROP TRIGGER IF EXISTS input_tallies_insert_delete ON inputs")
        op.execute("DROP FUNCTION IF EXISTS input_tallies_count()")
    else:
        for name in ("input_tallies_update", "input_tallies_delete", "input_tallies_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("input_tallies")
