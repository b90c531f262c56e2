"""The library's error hierarchy; CLIs turn these into one line and an exit code."""

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
