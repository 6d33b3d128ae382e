"""What happens after a commit: disposal of inbox files, forwarding DICOM results."""
