"""results.runtime: which inference runtime made each result

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # every result before this revision was made by TensorFlow, the only runtime then
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('runtime', sa.String(length=16), server_default='tensorflow', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_column('runtime')
