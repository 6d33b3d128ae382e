"""sightings keep the inode: part of a file's identity

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('inode', sa.BigInteger(), server_default='0', nullable=False)
        )
        batch_op.drop_constraint('uq_sightings_path_size_mtime', type_='unique')
        batch_op.create_unique_constraint(
            'uq_sightings_path_size_mtime_inode', ['path', 'size_bytes', 'mtime_ns', 'inode']
        )


def downgrade() -> None:
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_sightings_path_size_mtime_inode', type_='unique')
        batch_op.create_unique_constraint(
            'uq_sightings_path_size_mtime', ['path', 'size_bytes', 'mtime_ns']
        )
        batch_op.drop_column('inode')
