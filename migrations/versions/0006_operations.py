"""operations: result runs (reprocess), retention record, queue age, worker table

Revision ID: 0006_operations
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0006_operations"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("outputs_purged_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint("uq_results_input_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_results_input_run_frame", ["input_id", "run", "frame"]
        )
        batch_op.create_index("ix_results_purge", ["outputs_purged_at", "created_at"])
        batch_op.create_index("ix_results_run", ["run"])

    with op.batch_alter_table("inputs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    # inputs found before this revision entered the queue when they were found
    op.execute("UPDATE inputs SET queued_at = created_at")

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("cervix_model", sa.String(length=64), nullable=True),
        sa.Column("lesion_model", sa.String(length=64), nullable=True),
        sa.Column("precision", sa.String(length=16), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stop_reason", sa.String(length=64), nullable=True),
        sa.Column("paused", sa.Text(), nullable=True),
        sa.Column("disk_free_mb", sa.Float(), nullable=True),
        sa.Column("inputs_finished", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
    with op.batch_alter_table("inputs", schema=None) as batch_op:
        batch_op.drop_column("queued_at")
    # earlier runs cannot be kept under the old one-result-per-frame constraint
    op.execute(
        "DELETE FROM results WHERE run < (SELECT MAX(r.run) FROM results r "
        "WHERE r.input_id = results.input_id)"
    )
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_run")
        batch_op.drop_index("ix_results_purge")
        batch_op.drop_constraint("uq_results_input_run_frame", type_="unique")
        batch_op.create_unique_constraint("uq_results_input_id", ["input_id", "frame"])
        batch_op.drop_column("outputs_purged_at")
        batch_op.drop_column("run")
