"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 03:55:16.139355
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'processing', 'done', 'rejected', 'failed', name='input_status', native_enum=False, length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=True),
    sa.Column('format', sa.String(length=16), nullable=True),
    sa.Column('frame_count', sa.Integer(), nullable=True),
    sa.Column('study_uid', sa.String(length=64), nullable=True),
    sa.Column('series_uid', sa.String(length=64), nullable=True),
    sa.Column('sop_instance_uid', sa.String(length=64), nullable=True),
    sa.Column('sop_class_uid', sa.String(length=64), nullable=True),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_expires', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processing_ms', sa.Float(), nullable=True),
    sa.Column('disposition', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inputs')),
    sa.UniqueConstraint('sha256', name=op.f('uq_inputs_sha256'))
    )
    with op.batch_alter_table('inputs', schema=None) as batch_op:
        batch_op.create_index('ix_inputs_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_inputs_status_id', ['status', 'id'], unique=False)
        batch_op.create_index('ix_inputs_study_uid', ['study_uid'], unique=False)

    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('input_id', sa.Integer(), nullable=False),
    sa.Column('frame', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('cervix_found', sa.Boolean(), nullable=False),
    sa.Column('cervix_fraction', sa.Float(), nullable=False),
    sa.Column('lesion_fraction', sa.Float(), nullable=False),
    sa.Column('box_x0', sa.Integer(), nullable=True),
    sa.Column('box_y0', sa.Integer(), nullable=True),
    sa.Column('box_x1', sa.Integer(), nullable=True),
    sa.Column('box_y1', sa.Integer(), nullable=True),
    sa.Column('cervix_mask_path', sa.Text(), nullable=False),
    sa.Column('lesion_mask_path', sa.Text(), nullable=False),
    sa.Column('overlay_path', sa.Text(), nullable=False),
    sa.Column('crop_path', sa.Text(), nullable=True),
    sa.Column('cervix_model', sa.String(length=64), nullable=False),
    sa.Column('lesion_model', sa.String(length=64), nullable=False),
    sa.Column('precision', sa.String(length=16), nullable=False),
    sa.Column('stage1_ms', sa.Float(), nullable=False),
    sa.Column('stage2_ms', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['input_id'], ['inputs.id'], name=op.f('fk_results_input_id_inputs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('input_id', 'frame', name=op.f('uq_results_input_id'))
    )
    op.create_table('sightings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('input_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('mtime_ns', sa.BigInteger(), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['input_id'], ['inputs.id'], name=op.f('fk_sightings_input_id_inputs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sightings')),
    sa.UniqueConstraint('path', 'size_bytes', 'mtime_ns', name='uq_sightings_path_size_mtime')
    )
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.create_index('ix_sightings_input_id', ['input_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.drop_index('ix_sightings_input_id')

    op.drop_table('sightings')
    op.drop_table('results')
    with op.batch_alter_table('inputs', schema=None) as batch_op:
        batch_op.drop_index('ix_inputs_study_uid')
        batch_op.drop_index('ix_inputs_status_id')
        batch_op.drop_index('ix_inputs_created_at')

    op.drop_table('inputs')
