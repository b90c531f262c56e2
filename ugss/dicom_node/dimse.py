"""DIMSE statuses the node answers with, named and cited, and the one exception that carries them.

Storage SCP statuses are PS3.4 Annex B.2.3 (Table B.2-1); general ones are PS3.7 Annex C.
Handlers raise ``StoreRefusal``; ``scp.handle_store`` is the single place it becomes a status.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset

SUCCESS = 0x0000
# PS3.4 B.2.3: Refused: Out of Resources (spool full, disk error).
OUT_OF_RESOURCES = 0xA700
# PS3.4 B.2.3: Error: Data Set does not match SOP Class (bad UIDs, missing type 1 geometry,
# pixel data shorter than Rows × Columns × BitsAllocated, command/dataset UID mismatch).
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
# PS3.4 B.2.3: Error: Cannot understand (the data set does not parse).
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, diagnostic.
REJECT_PERMANENT = 0x01
SOURCE_SERVICE_USER = 0x01
DIAG_CALLING_AE_NOT_RECOGNIZED = 0x03
DIAG_CALLED_AE_NOT_RECOGNIZED = 0x07

_NAMES = {
    SUCCESS: "Success",
    OUT_OF_RESOURCES: "Refused: Out of Resources",
    DATASET_DOES_NOT_MATCH_SOP_CLASS: "Error: Data Set does not match SOP Class",
    CANNOT_UNDERSTAND: "Error: Cannot understand",
}


def status_name(status: int) -> str:
    """Human name of a status (PS3.4 B.2.3), for log lines."""
    return _NAMES.get(status, f"0x{status:04X}")


class StoreRefusal(Exception):
    """An instance the node will not keep; carries the PS3.4 status and a short reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def to_dataset(self) -> Dataset:
        """Status dataset with an Error Comment (0000,0902), at most 64 characters (LO)."""
        ds = Dataset()
        ds.Status = self.status
        ds.ErrorComment = self.reason[:64]
        return ds


@dataclass(frozen=True)
class SendResult:
    """Per outbox item: delivered, or the error to retry with (``permanent``: never retried,
    e.g. a DICOMweb 4xx)."""

    item_id: int
    ok: bool
    error: str = ""
    permanent: bool = False
