"""Compressed pixel data is decoded in a child process a decoder crash cannot reach the node from.

GDCM, OpenJPEG, CharLS and libjpeg are native code run on bytes a peer chose; a bad codestream
can abort (``terminate called …``, SIGABRT), crash or allocate what its header claims. Series
with any encapsulated slice are therefore decoded by ``python -m ugss.dicom_node.decode`` with
an address-space limit (RLIMIT_AS), a CPU-time limit (RLIMIT_CPU) and a wall-clock timeout; it
writes each slice as float32 HU (``.npy``) to a scratch folder that the job's reader then loads.
A crash or a limit hit raises ``DecodeFailed``: the worker quarantines the series (no retry)
and keeps serving. A slice the decoder refuses cleanly is an ordinary ``DicomSeriesError``.

Native and deflated slices are read in the node itself: numpy views and zlib, with every size
checked at receive time (``series.py``, ``encoding.py``).
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID

from ugss.errors import DicomSeriesError
from ugss.runtime.dicom_series import SliceReader, read_slice_hu

EXIT_REFUSED = 3  # a slice the decoder refused with a clean error (stderr: one line)
EXIT_MEMORY = 4  # MemoryError: the address-space limit was hit
_REASON_BYTES = 400


class DecodeFailed(DicomSeriesError):
    """The decoder crashed or hit a limit: the series is quarantined, never retried."""


@dataclass(frozen=True)
class DecodeLimits:
    """Limits of the decoder process."""

    memory_mb: int = 1024
    timeout_s: float = 120.0

    @property
    def cpu_s(self) -> int:
        return max(1, int(self.timeout_s))


def encapsulated_files(folder: Path) -> list[Path]:
    """Slices whose transfer syntax is compressed (only their file meta is read)."""
    out = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ts = UID(read_file_meta_info(path).get("TransferSyntaxUID", ""))
        except Exception:
            continue  # the reader reports unreadable files
        if ts.is_encapsulated:
            out.append(path)
    return out


@contextmanager
def slice_reader(folder: Path, scratch: Path, limits: DecodeLimits) -> Iterator[SliceReader | None]:
    """A ``read_slice`` for the reader: compressed slices decoded in a child; None if all native."""
    files = encapsulated_files(folder)
    if not files:
        yield None
        return
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix="decode-", dir=scratch))
    try:
        run_decoder(folder, out, limits)
        yield _DecodedSlices(out).read
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_decoder(folder: Path, out: Path, limits: DecodeLimits) -> None:
    """Decode every compressed slice of ``folder`` into ``out``; ``DecodeFailed`` if it dies."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parents[2])  # where ``ugss`` is importable from
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    args = [sys.executable, "-m", "ugss.dicom_node.decode", str(folder), str(out)]
    args += [str(limits.memory_mb * 2**20), str(limits.cpu_s)]
    try:
        run = subprocess.run(
            args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, timeout=limits.timeout_s, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DecodeFailed(f"decoder timed out after {limits.timeout_s:g} s") from None
    reason = run.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    why = reason[0][:_REASON_BYTES]
    if run.returncode == 0:
        return
    if run.returncode == EXIT_REFUSED:
        raise DicomSeriesError(why)
    if run.returncode == EXIT_MEMORY:
        raise DecodeFailed(f"decoder hit its memory limit ({limits.memory_mb} MiB)")
    if run.returncode < 0:
        name = signal.Signals(-run.returncode).name
        limit = " (CPU time limit)" if -run.returncode == signal.SIGXCPU else ""
        raise DecodeFailed(f"decoder crashed ({name}){limit}")
    raise DecodeFailed(f"decoder exited with status {run.returncode}: {why}")


class _DecodedSlices:
    """Slices the child decoded, by file stem; native slices are read here as before."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def read(self, path: Path, rows: int, cols: int) -> np.ndarray:
        decoded = self.out / f"{path.stem}.npy"
        if not decoded.exists():
            return read_slice_hu(path, rows, cols)
        hu = np.load(decoded, allow_pickle=False)
        if hu.shape != (rows, cols) or hu.dtype != np.float32:
            raise DicomSeriesError(
                f"{path}: decoded slice has shape {hu.shape}, expected {(rows, cols)}"
            )
        return hu


# --- the child -------------------------------------------------------------------------------


def _child(folder: Path, out: Path, memory_bytes: int, cpu_s: int) -> int:
    """Runs in the child: limits first, then decode; the exit status tells the parent how."""
    import pydicom

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    try:
        for path in encapsulated_files(folder):
            header = pydicom.dcmread(path, stop_before_pixels=True)
            hu = read_slice_hu(path, int(header.Rows), int(header.Columns))
            tmp = out / f".{path.stem}.npy"
            with open(tmp, "wb") as fh:
                np.save(fh, hu.astype(np.float32, copy=False), allow_pickle=False)
            os.replace(tmp, out / f"{path.stem}.npy")
    except MemoryError:
        return EXIT_MEMORY
    except DicomSeriesError as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
