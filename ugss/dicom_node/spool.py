"""The spool: received instances on disk, written so that an acknowledged instance is never lost.

Layout under the spool root::

    incoming/                     temporary files being written (cleared at start)
    series/<SeriesUID>/<SOPUID>.dcm
    headers/<SeriesUID>.dcm       first header (no pixel data) of a series that was not kept

A file is written to ``incoming/``, flushed and fsynced, renamed into place (atomic on one file
system) and the directory fsynced; only then may the C-STORE be answered with Success. UIDs are
validated (PS3.5 9.1) before they become path components, so ``../../x`` never reaches the disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from ugss.dicom_node.dimse import (
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    StoreRefusal,
)
from ugss.errors import ConfigError

# PS3.5 9.1: components of digits, no leading zero (except "0" itself), at most 64 characters.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
SERIES_DIR = "series"  # <spool>/series/<SeriesUID>/<SOPUID>.dcm


def is_valid_uid(value: object) -> bool:
    """PS3.5 9.1 UID syntax; the only strings the node turns into file names."""
    text = str(value) if value is not None else ""
    return 0 < len(text) <= 64 and _UID_RE.match(text) is not None


def checked_uid(value: object, what: str) -> str:
    """The UID as ``str``, or a refusal with PS3.4 status 0xA900 naming the attribute."""
    if not is_valid_uid(value):
        shown = repr(str(value))[:40] if value not in (None, "") else "missing"
        raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"invalid {what} {shown}")
    return str(value)


def _checked_dir(path: Path, loose: int) -> None:
    """Create ``path`` (0700), or accept it only as a real folder of ours that others cannot write.

    A symlinked ``incoming/`` would make the start-up clean-up delete someone else's files and a
    symlinked ``series/`` would put instances elsewhere; a 0777 spool lets anyone swap files.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"spool folder {path} is a symlink or not a folder")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"spool folder {path} belongs to uid {st.st_uid}, not to this user")
    if st.st_mode & loose:
        raise ConfigError(
            f"spool folder {path} has mode {stat.S_IMODE(st.st_mode):04o}: too open "
            f"(nothing of {loose:04o} allowed; chmod 0700)"
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AlreadyStored(Exception):
    """The instance is on disk already; ``path`` names the copy."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = path


class Spool:
    """Durable instance storage with a size limit (PS3.4 0xA700 when it would be exceeded)."""

    def __init__(self, root: Path, limit_bytes: int, used_bytes: int = 0) -> None:
        self.root = Path(root).resolve()
        self.limit_bytes = int(limit_bytes)
        self.incoming = self.root / "incoming"
        self.series_root = self.root / SERIES_DIR
        self.scratch = self.root / "scratch"  # decoded slices of the running job
        self.headers = self.root / "headers"  # a header of each acknowledged, unkept series
        self._lock = threading.Lock()
        self._used = int(used_bytes)
        self._reserved = 0
        _checked_dir(self.root, 0o022)  # systemd's StateDirectoryMode=0750 is fine
        for d in (self.incoming, self.series_root, self.scratch, self.headers):
            _checked_dir(d, 0o077)
        self.clear_incoming()

    def clear_incoming(self) -> int:
        """Remove partial files left by a crash (never acknowledged) and stale decoded slices.

        Entries are removed by name: a link is unlinked, never followed.
        """
        n = 0
        for folder in (self.incoming, self.scratch):
            for p in folder.iterdir():
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                n += 1
        return n

    @property
    def used_bytes(self) -> int:
        return self._used

    def series_dir(self, series_uid: str) -> Path:
        return self.series_root / checked_uid(series_uid, "SeriesInstanceUID")

    def instance_path(self, series_uid: str, sop_uid: str) -> Path:
        return self.series_dir(series_uid) / f"{checked_uid(sop_uid, 'SOPInstanceUID')}.dcm"

    def store(
        self, series_uid: str, sop_uid: str, data: bytes | Sequence[bytes | memoryview]
    ) -> tuple[Path, int]:
        """Write ``data`` (bytes or chunks) durably; returns the path and the bytes added.

        Never replaces: an instance already on disk raises ``AlreadyStored`` (the caller tells
        a duplicate from a conflicting resend), also when two stores of one UID race.
        """
        final = self.instance_path(series_uid, sop_uid)
        if os.path.lexists(final):
            raise AlreadyStored(final)
        chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
        size = sum(len(c) for c in chunks)
        with self._lock:
            if self._used + self._reserved + size > self.limit_bytes:
                raise StoreRefusal(OUT_OF_RESOURCES, "spool size limit reached")
            self._reserved += size
        tmp = self.incoming / f"{uuid.uuid4().hex}.part"
        added = 0
        try:
            new_dir = not final.parent.exists()
            final.parent.mkdir(mode=0o700, exist_ok=True)
            if final.parent.is_symlink():
                raise StoreRefusal(OUT_OF_RESOURCES, "series folder is a symlink")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            fd = os.open(tmp, flags, 0o600)
            try:
                for chunk in chunks:
                    view = memoryview(chunk)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)  # atomic create-if-absent (a rename would replace)
            except FileExistsError:
                raise AlreadyStored(final) from None
            _fsync_dir(final.parent)
            if new_dir:
                _fsync_dir(final.parent.parent)
            added = size
            return final, added
        except OSError as exc:
            raise StoreRefusal(OUT_OF_RESOURCES, f"cannot write spool: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
            with self._lock:
                self._reserved -= size
                self._used += added

    def header_path(self, series_uid: str) -> Path:
        return self.headers / f"{checked_uid(series_uid, 'SeriesInstanceUID')}.dcm"

    def store_header(self, series_uid: str, ds: Dataset) -> Path:
        """Keep ``ds`` without its pixel data (Explicit VR Little Endian), written atomically.

        The patient and study modules of a series that was acknowledged but not kept, for the
        study's "not assessed" report when no series of the study was kept."""
        header = Dataset()
        for elem in ds:
            if elem.tag < 0x7FE00000 and elem.tag.group != 0x0002:
                header.add(elem)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        header.file_meta = meta
        buf = io.BytesIO()
        header.save_as(buf, enforce_file_format=True)
        final = self.header_path(series_uid)
        tmp = self.incoming / f"{uuid.uuid4().hex}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final  # not counted: a few kB per series, removed with the series

    def holds(self, path: Path, dataset: bytes | memoryview) -> bool:
        """True when the file at ``path`` carries exactly this data set (after its file meta)."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < len(dataset):
                return False
            fh.seek(size - len(dataset))
            return fh.read() == dataset

    def account(self, delta: int) -> None:
        """Count bytes written outside ``store`` (results) against the limit, or free them."""
        with self._lock:
            self._used = max(0, self._used + int(delta))

    def remove_series(self, series_uid: str) -> int:
        """Delete a series folder (retention); returns the bytes freed. Never through a link."""
        folder = self.series_dir(series_uid)
        freed = remove_tree(folder)
        header = self.header_path(series_uid)
        if header.is_file() or header.is_symlink():
            header.unlink()
        self.account(-freed)
        return freed


def tree_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (links not followed)."""
    if folder.is_symlink() or not folder.is_dir():
        return 0
    total = 0
    for base, _, names in os.walk(folder):
        for name in names:
            st = os.lstat(os.path.join(base, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def remove_tree(folder: Path) -> int:
    """Remove ``folder`` if it is a real folder (a link is only unlinked); returns bytes freed."""
    if folder.is_symlink():
        folder.unlink()
        return 0
    freed = tree_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)  # fd-based: never follows links inside
    return freed
