"""webhook notices: one JSON notice per finished input, delivered at least once

Revision ID: 0010_webhook_notices
Revises: 0009_dicom_sr
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0010_webhook_notices"
down_revision = "0009_dicom_sr"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("input_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["input_id"],
            ["inputs.id"],
            name=op.f("fk_webhook_notices_input_id_inputs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_notices")),
    )
    op.create_index(
        "ix_webhook_notices_due", "webhook_notices", ["delivered_at", "next_attempt_at"]
    )
    op.create_index("ix_webhook_notices_input_id", "webhook_notices", ["input_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_notices_input_id", table_name="webhook_notices")
    op.drop_index("ix_webhook_notices_due", table_name="webhook_notices")
    op.drop_table("webhook_notices")
