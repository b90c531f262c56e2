"""Helpers for the DICOM node tests: ports, series on disk, a collecting SCP, Orthanc, DCMTK.

Everything talks over 127.0.0.1 on free high ports and stops by itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts, build_context
from pynetdicom.sop_class import Verification

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
import onnx_models as om

from ugss.dicom_node.scp import serve_in_thread
from ugss.runtime.dicom_series import write_dicom_series

ORTHANC = shutil.which("Orthanc") or next(
    (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None
)
STORESCU = "/usr/bin/storescu" if os.path.exists("/usr/bin/storescu") else None
ECHOSCU = "/usr/bin/echoscu" if os.path.exists("/usr/bin/echoscu") else None
DCIODVFY = shutil.which("dciodvfy")
DICOMWEB_PLUGIN = next(
    (p for p in ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",) if os.path.exists(p)), None
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_series(
    out: Path, *, slices: int = 34, size: int = 96, spacing=(5.0, 2.0, 2.0), entropy: str = "t"
) -> list[Path]:
    """A phantom head CT with a left-sided bleed as one DICOM CT series (96² at 2 mm: a head of
    adult size, which the runtime's intracranial-space estimate needs)."""
    vol, _ = om.phantom_volume((slices, size, size), spacing=spacing)
    return write_dicom_series(vol, out, patient_id="UGSS-TEST", uid_entropy=entropy)


def tiny_model(out: Path, *, mc: bool = True) -> Path:
    model = om.build_mc_model(om.mc_info(64, 6)) if mc else om.build_det_model(om.det_info(64))
    return om.save(model, out)


@dataclass
class CollectingSCP:
    """A minimal storage SCP standing in for a PACS: keeps what it receives in memory."""

    ae_title: str = "PACS"
    received: list[pydicom.Dataset] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)
    status: int = 0x0000

    def start(self, port: int = 0) -> int:
        ae = AE(ae_title=self.ae_title)
        ae.supported_contexts = [build_context(Verification)] + [
            build_context(cx.abstract_syntax, ExplicitVRLittleEndian)
            for cx in AllStoragePresentationContexts
        ]

        def on_store(event: evt.Event) -> int:
            if self.status == 0:
                ds = event.dataset
                ds.file_meta = event.file_meta
                self.received.append(ds)
                self.event.set()
            return self.status

        self._ae = ae
        self._server = ae.make_server(
            ("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, on_store)]
        )
        serve_in_thread(ae, self._server, "fake-pacs")
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._ae.shutdown()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[pydicom.Dataset]:
        end = time.time() + timeout
        while len(self.received) < n and time.time() < end:
            time.sleep(0.05)
        return list(self.received)


def send_files(
    port: int,
    paths: list[Path],
    *,
    called: str = "UGSS",
    calling: str = "SCU",
    bind: str = "127.0.0.1",
) -> list[int]:
    """C-STORE each file over one association; returns the statuses (-1: no association)."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    seen = set()
    for p in paths:
        meta = pydicom.dcmread(p, stop_before_pixels=True).file_meta
        key = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        if key not in seen:
            seen.add(key)
            ae.add_requested_context(*key)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, bind_address=(bind, 0))
    if not assoc.is_established:
        return [-1] * len(paths)
    try:
        out = []
        for p in paths:
            rsp = assoc.send_c_store(p)
            out.append(int(rsp.Status) if "Status" in rsp else -2)
        return out
    finally:
        assoc.release()


def send_raw(
    port: int,
    sop_class: str,
    sop_uid: str,
    payload: bytes,
    *,
    called: str = "UGSS",
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> int:
    """C-STORE whose data set is ``payload`` as is (malformed traffic pynetdicom would not send)."""
    from io import BytesIO

    from pynetdicom.dimse_primitives import C_STORE

    ae = AE(ae_title="RAW")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    ae.add_requested_context(sop_class, transfer_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        req = C_STORE()
        req.MessageID = 1
        req.Priority = 2
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = sop_uid
        req.DataSet = BytesIO(payload)
        context = assoc._get_valid_context(sop_class, transfer_syntax, "scu")
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused:
            time.sleep(0.0001)
        assoc.dimse.send_msg(req, context.context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
        assoc._reactor_checkpoint.set()
        return int(rsp.Status) if rsp is not None else -1
    finally:
        assoc.release()


def echo(port: int, *, called: str = "UGSS", calling: str = "SCU", bind: str = "127.0.0.1"):
    """C-ECHO; returns the status, or the association outcome as a string."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.network_timeout = 10
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=called, bind_address=(bind, 0))
    if assoc.is_rejected:
        rsp = assoc.acceptor.primitive
        return f"rejected:{rsp.result_source}:{rsp.diagnostic}"
    if not assoc.is_established:
        return "no-association"
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def dciodvfy_errors(path: Path) -> list[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    return [ln for ln in text.splitlines() if ln.startswith("Error")]


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


# --- Orthanc ---------------------------------------------------------------------------------


class Orthanc:
    """Orthanc from a temporary config on its own ports (RemoteAccessAllowed false, no plugins)."""

    def __init__(self, workdir: Path, *, aet: str = "ORTHANC") -> None:
        self.workdir = workdir
        self.aet = aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(
        self,
        modalities: dict[str, list] | None = None,
        *,
        dicomweb: bool = False,
        users: dict[str, str] | None = None,
    ) -> Orthanc:
        """``dicomweb``: load the DICOMweb plugin (Debian orthanc-dicomweb) at /dicom-web;
        ``users``: HTTP basic authentication on (the helper's own requests use the first)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.users = users or {}
        config = {
            "Name": "UGSS-TEST",
            "StorageDirectory": str(self.workdir / "db"),
            "IndexDirectory": str(self.workdir / "db"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(users),
            "RegisteredUsers": users or {},
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "DicomModalities": modalities or {},
            "Plugins": [DICOMWEB_PLUGIN] if dicomweb else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StableAge": 1,
            "StorageCompression": False,
            "DicomScpTimeout": 10,
        }
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(config, indent=2))
        self.log = open(self.workdir / "orthanc.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [ORTHANC, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        if not wait_until(self._alive, timeout=20, step=0.1):
            self.stop()
            raise RuntimeError(
                "Orthanc did not start: " + (self.workdir / "orthanc.log").read_text()
            )
        return self

    def _alive(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    def stop(self, graceful: bool = False) -> None:
        """SIGKILL by default: a test's Orthanc holds only temporary data, and its graceful
        shutdown takes 3-4 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def _request(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"
    ):
        headers = {"Content-Type": ctype} if body is not None else {}
        if getattr(self, "users", None):
            import base64

            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method, headers=headers
        )
        with urllib.request.urlopen(req, timeout=60) as rsp:
            data = rsp.read()
        ctype_out = rsp.headers.get("Content-Type", "")
        return json.loads(data) if "json" in ctype_out and data else data

    def get(self, path: str):
        return self._request("GET", path)

    def post(self, path: str, body):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ctype = "application/dicom" if isinstance(body, bytes) else "application/json"
        return self._request("POST", path, raw, ctype)

    def put(self, path: str, body: dict):
        return self._request("PUT", path, json.dumps(body).encode())

    def upload(self, paths: list[Path]) -> None:
        for p in paths:
            self.post("/instances", p.read_bytes())

    def series_id(self, series_uid: str) -> str:
        found = self.post("/tools/lookup", series_uid.encode())
        return next(r["ID"] for r in found if r["Type"] == "Series")

    def find_series(self, **tags: str) -> list[dict]:
        return self.post("/tools/find", {"Level": "Series", "Query": tags, "Expand": True})

    def instance_file(self, instance_id: str) -> bytes:
        return self._request("GET", f"/instances/{instance_id}/file")


def mask_from_seg(seg_path: Path, sop_uids: list[str]) -> np.ndarray:
    """SEG → ``(n, rows, cols)`` bool in the order of ``sop_uids`` (source images)."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    px = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=sop_uids, segment_numbers=[1], assert_missing_frames_are_empty=True
    )
    return px[..., 0].astype(bool)


# --- multi-series studies --------------------------------------------------------------------

DOSE_SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"  # X-Ray Radiation Dose SR Storage


def edit_files(paths: list[Path], **attrs) -> list[Path]:
    """Set DICOM attributes on every file in place (kernel, description, image type, …)."""
    for p in paths:
        ds = pydicom.dcmread(p)
        for key, value in attrs.items():
            setattr(ds, key, value)
        ds.save_as(p, enforce_file_format=True)
    return paths


def phantom_series(
    out: Path,
    study_uid: str,
    number: int,
    description: str,
    *,
    kernel: str = "STANDARD",
    thickness: float = 5.0,
    sharp: bool = False,
    entropy: str = "study",
    **attrs,
) -> list[Path]:
    """One axial series of the phantom head in ``study_uid`` (the same anatomy at any
    thickness); ``sharp`` mimics a bone-kernel reconstruction (edge enhancement and noise)."""
    from scipy import ndimage

    from ugss.runtime.volume import Volume

    slices = round(170 / thickness)
    vol, _ = om.phantom_volume((slices, 96, 96), spacing=(thickness, 2.0, 2.0))
    hu = vol.hu
    if sharp:
        rng = np.random.default_rng(number)
        hu = hu + 1.5 * (hu - ndimage.gaussian_filter(hu, (0, 1, 1)))
        hu = hu + rng.normal(0, 25, hu.shape).astype(np.float32)
    paths = write_dicom_series(
        Volume(hu=hu, affine=vol.affine), out, patient_id="UGSS-TEST", study_instance_uid=study_uid,
        series_number=number, series_description=description, uid_entropy=f"{entropy}-{number}",
    )  # fmt: skip
    return edit_files(paths, ConvolutionKernel=kernel, **attrs) if kernel or attrs else paths


def localizer(out: Path, like: Path, number: int) -> list[Path]:
    """A scout image of the study of ``like``."""
    from pydicom.uid import generate_uid

    out.mkdir(parents=True)
    ds = pydicom.dcmread(like)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesNumber, ds.SeriesDescription = number, "Topogram"
    ds.save_as(out / "scout.dcm", enforce_file_format=True)
    return [out / "scout.dcm"]


def coronal(out: Path, study_uid: str, number: int) -> list[Path]:
    """A coronal reformat marked ORIGINAL (as some scanners do)."""
    from ugss.runtime.dicom_series import write_dicom_stack

    vol, _ = om.phantom_volume((34, 96, 96), spacing=(5.0, 2.0, 2.0))
    stack = np.ascontiguousarray(vol.hu.transpose(1, 0, 2)[::-1][:, ::-1])  # (y, z, x)
    affine = np.array([[2.0, 0, 0, -96], [0, 0, 2.0, -96], [0, -5.0, 0, 85], [0, 0, 0, 1]])
    paths = write_dicom_stack(
        stack[::4], affine @ np.diag([1, 1, 4, 1]), out, patient_id="UGSS-TEST",
        study_instance_uid=study_uid, series_number=number, series_description="Head coronal",
        uid_entropy=f"coronal-{study_uid}",
    )  # fmt: skip
    return edit_files(paths, ImageType=["ORIGINAL", "PRIMARY", "OTHER"])


def dose_report(out: Path, like: Path, number: int) -> list[Path]:
    """A minimal X-Ray Radiation Dose SR of the study of ``like``."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    src = pydicom.dcmread(like, stop_before_pixels=True)
    ds = Dataset()
    for key in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
    ):
        setattr(ds, key, src.get(key, ""))  # fmt: skip
    ds.SOPClassUID, ds.SOPInstanceUID = DOSE_SR_CLASS, generate_uid()
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = generate_uid(), number, "SR"
    ds.SeriesDescription, ds.InstanceNumber, ds.Manufacturer = "Dose Report", 1, "UGSS"
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113701", "DCM"
    code.CodeMeaning = "X-Ray Radiation Dose Report"
    ds.ConceptNameCodeSequence = [code]
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ds.ContentDate, ds.ContentTime = src.StudyDate, src.StudyTime
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DOSE_SR_CLASS, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    out.mkdir(parents=True)
    ds.save_as(out / "dose.dcm", enforce_file_format=True)
    return [out / "dose.dcm"]


def head_study(out: Path, study_uid: str) -> dict[str, list[Path]]:
    """The issue's six-series head CT study: localizer, 5 mm soft, 5 mm bone, 1.25 mm soft,
    coronal reformat, dose report."""
    soft = phantom_series(out / "soft5", study_uid, 2, "Head 5mm soft", kernel="H30S")
    return {
        "localizer": localizer(out / "scout", soft[0], 1),
        "soft5": soft,
        "bone5": phantom_series(
            out / "bone5", study_uid, 3, "Head 5mm bone", kernel="H70H", sharp=True
        ),
        "thin": phantom_series(
            out / "thin", study_uid, 4, "Head 1.25mm", kernel="H30S", thickness=1.25
        ),
        "coronal": coronal(out / "coronal", study_uid, 5),
        "dose": dose_report(out / "dose", soft[0], 6),
    }


def series_uid_of(paths: list[Path]) -> str:
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
