"""Gantry-tilted head CT: read as it is, true voxel volume, sheared affine, SEG on its own grid.

The anatomy is analytic (a skull ellipsoid with a spherical bleed), sampled once on an untilted
grid and once on a 20°-tilted one (image planes rotated about the left-right axis, slices
stacked along the table), so both scans hold exactly the same anatomy.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from node_helpers import (
    DCIODVFY,
    ORTHANC,
    Orthanc,
    dciodvfy_errors,
    free_port,
    wait_until,
)
from typer.testing import CliRunner

from ugss.dicom_node.config import Destination, Peer
from ugss.runtime.dicom_series import read_dicom_series, write_dicom_stack
from ugss.runtime.infer_cli import app as infer_app
from ugss.runtime.nifti import read_nifti, write_nifti
from ugss.runtime.volume import Volume

BLEED_CENTRE = np.array([25.0, 10.0, 15.0])  # RAS mm
BLEED_RADIUS = 20.0


def anatomy(xyz: np.ndarray) -> np.ndarray:
    """HU at RAS points ``(..., 3)``: air, skull shell, brain 35 HU, a 70 HU bleed."""
    r = np.linalg.norm(xyz / np.array([70.0, 90.0, 75.0]), axis=-1)
    hu = np.where(r < 1.0, 1000.0, -1000.0)
    hu = np.where(r < 0.93, 35.0, hu)
    bleed = np.linalg.norm(xyz - BLEED_CENTRE, axis=-1) < BLEED_RADIUS
    return np.where(bleed & (r < 0.93), 70.0, hu).astype(np.float32)


def scan(tilt_deg: float, *, pixel=1.0, step=2.5, size=192, slices=72):
    """``(stack (k, rows, cols), RAS affine)``: rows tilted by ``tilt_deg`` about x, slices
    ``step`` mm apart along the table (z); the spacing along the normal is step·cos(tilt)."""
    t = np.radians(tilt_deg)
    affine = np.eye(4)
    affine[:3, 0] = [-pixel, 0, 0]  # columns run to the patient's right (radiological view)
    affine[:3, 1] = [0, -pixel * np.cos(t), -pixel * np.sin(t)]  # rows run posterior (tilted)
    affine[:3, 2] = [0, 0, step]
    affine[:3, 3] = [pixel * size / 2, pixel * size / 2 * np.cos(t), -step * slices / 2]
    affine[2, 3] += pixel * size / 2 * np.sin(t)
    k, j, i = np.meshgrid(np.arange(slices), np.arange(size), np.arange(size), indexing="ij")
    ijk1 = np.stack([i, j, k, np.ones_like(i)], axis=-1).astype(np.float64)
    xyz = (ijk1 @ affine.T)[..., :3]
    return anatomy(xyz), affine


def bleed_ml(volume: Volume) -> float:
    return volume.volume_ml((volume.hu > 60) & (volume.hu < 80))


@pytest.mark.slow
def test_tilted_series_volume_equals_the_untilted_one(tmp_path):
    flat = read_dicom_series_of(tmp_path / "flat", *scan(0.0))
    tilted = read_dicom_series_of(tmp_path / "tilt", *scan(20.0))
    true_ml = 4 / 3 * np.pi * BLEED_RADIUS**3 / 1000
    a, b = bleed_ml(flat), bleed_ml(tilted)
    print(
        f"bleed {true_ml:.2f} mL: untilted {a:.2f}, 20° tilt {b:.2f} ({100 * (b / a - 1):+.2f} %)"
    )
    assert b == pytest.approx(a, rel=0.02) and a == pytest.approx(true_ml, rel=0.02)
    # the voxel volume is pixel area × spacing along the normal, not × the table step
    assert tilted.voxel_volume_ml == pytest.approx(1.0 * 1.0 * 2.5 * np.cos(np.radians(20)) / 1000)
    column = tilted.affine[:3, 2]  # the sheared affine: the slice column is the table step
    assert np.linalg.norm(column) == pytest.approx(2.5, abs=1e-3)


def read_dicom_series_of(folder, stack, affine) -> Volume:
    write_dicom_stack(stack, affine, folder, patient_id="UGSS-TILT")
    return read_dicom_series(folder)


def test_tilt_beyond_the_limit_is_refused_with_its_angle(tmp_path):
    from ugss.errors import DicomSeriesError

    stack, affine = scan(40.0, size=32, slices=4, pixel=4.0)
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 40\.0°"):
        read_dicom_series_of(tmp_path / "t40", stack, affine)


def test_nifti_dicom_nifti_round_trip_keeps_the_sheared_affine(tmp_path, model_path):
    stack, affine = scan(20.0, pixel=2.0, step=5.0, size=96, slices=34)
    nii = tmp_path / "tilted.nii.gz"
    nib.save(nib.Nifti1Image(stack.transpose(2, 1, 0), affine), nii)
    first = read_nifti(nii)
    from ugss.runtime.dicom_series import write_dicom_series

    write_dicom_series(first, tmp_path / "dicom")
    again = read_dicom_series(tmp_path / "dicom")
    assert np.allclose(again.affine, first.affine, atol=1e-3)
    assert np.array_equal(again.hu, first.hu)
    write_nifti(tmp_path / "back.nii.gz", again.hu, like=again)
    back = nib.load(tmp_path / "back.nii.gz")
    src = back.get_fdata()
    assert np.allclose(back.affine, nib.load(nii).affine, atol=1e-3) or np.allclose(
        back.affine, again.source_grid.affine, atol=1e-3
    )
    assert src.shape == stack.transpose(2, 1, 0).shape
    # ugss-infer on the tilted DICOM series: its maps carry the same sheared affine
    out = CliRunner().invoke(
        infer_app,
        [str(tmp_path / "dicom"), "-o", str(tmp_path / "infer"), "--model", str(model_path),
         "--provider", "cpu", "--no-pictures"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (mask,) = (tmp_path / "infer").glob("*_mask.nii.gz")
    assert np.allclose(nib.load(mask).affine, again.source_grid.affine, atol=1e-3)
    sheared = nib.load(mask).affine[:3, :3]
    normal = np.cross(sheared[:, 0], sheared[:, 1])
    assert abs(np.dot(sheared[:, 2], normal / np.linalg.norm(normal))) < np.linalg.norm(
        sheared[:, 2]
    )


@pytest.mark.integration
@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)")
def test_tilted_series_through_orthanc_gets_a_seg_on_its_own_grid(tmp_path, make_node):
    stack, affine = scan(20.0, pixel=2.0, step=5.0, size=96, slices=34)
    files = write_dicom_stack(stack, affine, tmp_path / "ct", patient_id="UGSS-TILT")
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc")
    orthanc.start(modalities={"ugss": ["UGSS", "127.0.0.1", node_port]})
    try:
        make_node(
            port=node_port, peers=(Peer("ORTHANC", "127.0.0.1"),),
            destinations=(Destination("orthanc", "ORTHANC", "127.0.0.1", orthanc.dicom_port),),
        )  # fmt: skip
        orthanc.upload(files)
        series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        orthanc.post(
            "/modalities/ugss/store",
            {"Resources": [orthanc.series_id(series_uid)], "Synchronous": True},
        )
        assert wait_until(lambda: orthanc.find_series(Modality="SEG"), timeout=90)
        (seg_series,) = orthanc.find_series(Modality="SEG")
        seg_path = tmp_path / "seg.dcm"
        seg_path.write_bytes(orthanc.instance_file(seg_series["Instances"][0]))
    finally:
        orthanc.stop()
    seg = pydicom.dcmread(seg_path)
    ct = {str(h.SOPInstanceUID): h for h in map(pydicom.dcmread, files)}
    iop = [float(v) for v in next(iter(ct.values())).ImageOrientationPatient]
    shared = seg.SharedFunctionalGroupsSequence[0]
    seg_iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    assert np.allclose(seg_iop, iop, atol=1e-6)
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(pos, [float(v) for v in ct[str(ref)].ImagePositionPatient], atol=1e-3)
    if DCIODVFY is not None:
        assert dciodvfy_errors(seg_path) == []
