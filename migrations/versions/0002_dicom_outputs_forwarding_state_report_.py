"""dicom outputs, forwarding state, report indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 04:42:06.407976
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inputs', schema=None) as batch_op:
        batch_op.create_index('ix_inputs_status_processing_ms', ['status', 'processing_ms'], unique=False)

    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dicom_seg_path', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('dicom_sc_path', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('dicom_seg_uid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('dicom_sc_uid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('forward_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('forward_detail', sa.Text(), nullable=True))
        batch_op.create_index('ix_results_models', ['cervix_model', 'lesion_model', 'precision'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_models')
        batch_op.drop_column('forward_detail')
        batch_op.drop_column('forward_status')
        batch_op.drop_column('dicom_sc_uid')
        batch_op.drop_column('dicom_seg_uid')
        batch_op.drop_column('dicom_sc_path')
        batch_op.drop_column('dicom_seg_path')

    with op.batch_alter_table('inputs', schema=None) as batch_op:
        batch_op.drop_index('ix_inputs_status_processing_ms')

