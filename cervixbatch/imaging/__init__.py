"""File to frames: photos through OpenCV, DICOM through pydicom."""
