"""DICOM node: C-STORE SCP, spool, series jobs, DICOM-SEG/SR encoding, sender. Never imports torch."""
