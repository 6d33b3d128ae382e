"""pacs source: instances fetched from a DICOMweb PACS, and the QIDO-RS walks' cursors

Revision ID: 0011_pacs_source
Revises: 0010_webhook_notices
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0011_pacs_source"
down_revision = "0010_webhook_notices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pacs_instances",
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid", name=op.f("pk_pacs_instances")),
    )
    op.create_table(
        "pacs_cursors",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_pacs_cursors")),
    )


def downgrade() -> None:
    op.drop_table("pacs_cursors")
    op.drop_table("pacs_instances")
