"""dicomweb stow: per-result STOW-RS delivery state (status, detail, HTTP error status);
the delivery states indexed for `status`

Revision ID: 0008_dicomweb_stow
Revises: 0007_queue_scale

``results`` only gains columns (no table rebuild on SQLite: plain ADD COLUMN), so the
triggers 0007 put on ``inputs`` are untouched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0008_dicomweb_stow"
down_revision = "0007_queue_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("results", sa.Column("stow_status", sa.String(length=16), nullable=True))
    op.add_column("results", sa.Column("stow_detail", sa.Text(), nullable=True))
    op.add_column("results", sa.Column("stow_http_status", sa.Integer(), nullable=True))
    op.create_index("ix_results_forward_status", "results", ["forward_status"])
    op.create_index("ix_results_stow_status", "results", ["stow_status"])


def downgrade() -> None:
    op.drop_index("ix_results_stow_status", table_name="results")
    op.drop_index("ix_results_forward_status", table_name="results")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("stow_http_status")
        batch_op.drop_column("stow_detail")
        batch_op.drop_column("stow_status")
