"""dicom sr: each result's DICOM Structured Report (TID 1500 measurements) path and UID

Revision ID: 0009_dicom_sr
Revises: 0008_dicomweb_stow
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0009_dicom_sr"
down_revision = "0008_dicomweb_stow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("results", sa.Column("dicom_sr_path", sa.Text(), nullable=True))
    op.add_column("results", sa.Column("dicom_sr_uid", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("dicom_sr_uid")
        batch_op.drop_column("dicom_sr_path")
