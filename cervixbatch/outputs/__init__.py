"""What a result leaves on disk: the outbox and its one atomic writer, overlays, frames,
DICOM SEG and Secondary Capture objects."""
