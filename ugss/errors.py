"""The library's error hierarchy; CLIs turn these into one line and an exit code.

``UGSSError`` (exit 1)
    ``InputError`` (exit 2): the user gave something we cannot use
        ``VolumeError``: not a usable 3D CT volume
            ``DicomSeriesError``: a DICOM series that is not one consistent axial CT volume
        ``ConfigError``: an option or configuration value out of range or inconsistent
    ``ExportError``: an exported graph does not reproduce PyTorch (``ugss-export``)
    ``TensorRTBuildError``: TensorRT refused the network, failed to build it, or its plan
    failed the parity check (``ugss-export --trt``)

The DICOM node adds ``dicom_node.decode.DecodeFailed`` (a ``DicomSeriesError``: the series is
quarantined) and two signals that never reach a CLI: ``dimse.StoreRefusal`` and
``spool.AlreadyStored``, turned into a C-STORE status inside the SCP (``scp.py``).
"""

from __future__ import annotations


class UGSSError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1


class InputError(UGSSError):
    """The user gave something we cannot use (bad file, bad value): exit code 2."""

    exit_code = 2


class VolumeError(InputError):
    """A file or folder is not a usable 3D CT volume."""


class DicomSeriesError(VolumeError):
    """A DICOM series cannot be assembled into one consistent axial CT volume."""


class ConfigError(InputError):
    """An option or configuration value is out of range or inconsistent."""


class ExportError(UGSSError):
    """The exported graph does not reproduce PyTorch: a bug, not a user error."""


class TensorRTBuildError(UGSSError):
    """TensorRT refused the network or failed to build it, or the plan failed parity."""
