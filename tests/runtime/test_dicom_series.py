"""DICOM CT series: NIfTI → DICOM → Volume round trips, and one clear refusal per broken series."""

from __future__ import annotations

import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel import orientations as nio
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, JPEGLosslessSV1, RLELossless, generate_uid

from ugss.errors import DicomSeriesError, VolumeError
from ugss.runtime import dicom_series, read_nifti, read_volume
from ugss.runtime.dicom_series import (
    read_dicom_series,
    read_dicom_series_with_refs,
    write_dicom_series,
    write_dicom_stack,
)
from ugss.runtime.volume import Volume

SHAPE = (5, 32, 40)  # (z, y, x)
SPACING = (5.0, 0.45, 0.4)


def _canonical_affine() -> np.ndarray:
    sz, sy, sx = SPACING
    affine = np.diag([-sx, -sy, sz, 1.0])
    affine[:3, 3] = (10.0, -20.0, -30.0)
    return affine


@pytest.fixture
def volume() -> Volume:
    """Distinct values per slice and a pattern that changes under every flip and transpose."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    hu = (100 * z + 3 * y + x - 500).astype(np.float32)
    hu[2, 3:7, 30:35] = 1800  # a bright off-centre blob
    return Volume(hu=hu, affine=_canonical_affine())


@pytest.fixture
def series(tmp_path, volume):
    """A written 5-slice series folder."""
    folder = tmp_path / "series"
    write_dicom_series(volume, folder, uid_entropy="fixture")
    return folder


def _files(folder):
    return sorted(folder.glob("*.dcm"))


def _edit(path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _save_reoriented(volume: Volume, path, axcodes) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.rint(volume.hu.transpose(2, 1, 0)).astype(np.int16), volume.affine)
    ornt = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(axcodes))
    img = img.as_reoriented(ornt)
    nib.save(img, str(path))
    return img


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("P", "L", "I")])
def test_nifti_to_dicom_to_volume_round_trip(tmp_path, volume, axcodes):
    nii = tmp_path / "scan.nii.gz"
    _save_reoriented(volume, nii, axcodes)
    from_nifti = read_nifti(nii)
    paths = write_dicom_series(from_nifti, tmp_path / "dcm", series_number=7)
    assert [p.name for p in paths] == [f"IM{k:04d}.dcm" for k in range(1, 6)]

    vol, info = read_dicom_series_with_refs(tmp_path / "dcm")
    np.testing.assert_array_equal(vol.hu, from_nifti.hu)
    np.testing.assert_array_equal(vol.hu, volume.hu)
    np.testing.assert_allclose(vol.affine, from_nifti.affine, atol=1e-4)
    assert vol.spacing == pytest.approx(SPACING)
    assert vol.hu.dtype == np.float32
    first = pydicom.dcmread(paths[0])
    assert vol.source.format == "dicom"
    assert vol.source.series_instance_uid == first.SeriesInstanceUID
    assert vol.source.study_instance_uid == first.StudyInstanceUID
    assert first.SeriesNumber == 7
    assert list(first.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    # the references come back in slice order, without pixel data
    assert info.is_axial and info.z_order() == list(range(5))
    assert info.sop_instance_uids == tuple(pydicom.dcmread(p).SOPInstanceUID for p in paths)
    assert all("PixelData" not in h for h in info.headers)


@pytest.mark.parametrize(
    "axcodes", [("R", "A", "S"), ("L", "A", "I"), ("P", "S", "L"), ("I", "R", "P")]
)
def test_series_stored_in_any_orientation_reads_like_the_same_nifti(tmp_path, volume, axcodes):
    """DICOM written on a non-canonical grid (flipped, coronal, sagittal) lands where NIfTI does."""
    img = _save_reoriented(volume, tmp_path / "scan.nii", axcodes)
    data_ijk = np.asarray(img.dataobj)
    write_dicom_stack(data_ijk.transpose(2, 1, 0), img.affine, tmp_path / "dcm")

    vol, info = read_dicom_series_with_refs(tmp_path / "dcm")
    ref = read_nifti(tmp_path / "scan.nii")
    np.testing.assert_array_equal(vol.hu, ref.hu)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-4)
    np.testing.assert_allclose(vol.source_grid.affine, img.affine, atol=1e-4)
    # frames() maps canonical data back onto the stored images, pixel for pixel
    frames = info.frames(vol.hu)
    for header, path, frame in zip(info.headers, info.files, frames, strict=True):
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == header.SOPInstanceUID
        np.testing.assert_array_equal(frame, ds.pixel_array)
    assert info.is_axial == (axcodes[2] in "SI")
    if info.is_axial:
        order = info.z_order()
        z_of_first_header = order.index(0)
        assert z_of_first_header == (0 if axcodes[2] == "S" else 4)


def test_order_comes_from_positions_not_names_or_instance_numbers(tmp_path, series, volume):
    rng = np.random.default_rng(0)
    files = _files(series)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for src, name, number in zip(files, rng.permutation(len(files)), [3, 1, 5, 2, 4], strict=True):
        dst = shuffled / f"zz{name}.dcm"
        shutil.copy(src, dst)
        _edit(dst, lambda ds, n=number: setattr(ds, "InstanceNumber", n))
    vol = read_dicom_series(shuffled)
    np.testing.assert_array_equal(vol.hu, volume.hu)
    np.testing.assert_allclose(vol.affine, volume.affine, atol=1e-4)


def test_rescale_slope_and_intercept_are_applied_per_slice(series, volume):
    for k, path in enumerate(_files(series)):
        if k % 2:

            def rescale(ds):
                stored = (ds.pixel_array.astype(np.int32) + 1024) * 2
                ds.PixelData = stored.astype(np.int16).tobytes()
                ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024"

            _edit(path, rescale)
    np.testing.assert_array_equal(read_dicom_series(series).hu, volume.hu)


def test_uint16_storage_keeps_hu_exact(tmp_path, volume):
    hu = volume.hu.copy()
    hu[0, 0, 0] = 40000  # beyond int16: stored as uint16 with intercept -1024
    paths = write_dicom_series(Volume(hu=hu, affine=volume.affine), tmp_path / "dcm")
    ds = pydicom.dcmread(paths[0])
    assert ds.PixelRepresentation == 0 and float(ds.RescaleIntercept) == -1024
    np.testing.assert_array_equal(read_dicom_series(tmp_path / "dcm").hu, hu)


def test_rle_compressed_series_is_decoded(series, volume):
    for path in _files(series):
        _edit(path, lambda ds: ds.compress(RLELossless))
    assert pydicom.dcmread(_files(series)[0]).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(read_dicom_series(series).hu, volume.hu)


def test_non_dicom_files_and_subfolders_and_resent_duplicates(tmp_path, series, volume):
    nested = tmp_path / "export" / "DICOM" / "S1"
    shutil.copytree(series, nested)
    (tmp_path / "export" / "README.txt").write_text("exported by a PACS\n")
    (tmp_path / "export" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    shutil.copy(nested / "IM0003.dcm", nested / "IM0003-resent.dcm")  # same SOPInstanceUID
    vol, info = read_dicom_series_with_refs(tmp_path / "export")
    np.testing.assert_array_equal(vol.hu, volume.hu)
    assert len(info.files) == 5


def test_raw_datasets_without_preamble_are_read(series, volume):
    """Old exports lack the 128-byte preamble and file meta; implicit VR little endian then."""
    for path in _files(series):
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(path, implicit_vr=True, little_endian=True)
    assert _files(series)[0].read_bytes()[:4] == b"\x08\x00\x05\x00"  # starts with a tag
    np.testing.assert_array_equal(read_dicom_series(series).hu, volume.hu)


def test_read_volume_dispatches_folders_to_the_dicom_reader(series, volume):
    vol = read_volume(series)
    assert vol.source.format == "dicom"
    np.testing.assert_array_equal(vol.hu, volume.hu)


def test_uids_are_deterministic_with_entropy(tmp_path, volume):
    a = write_dicom_series(volume, tmp_path / "a", uid_entropy="case-1")
    b = write_dicom_series(volume, tmp_path / "b", uid_entropy="case-1")
    c = write_dicom_series(volume, tmp_path / "c")
    uids = [[pydicom.dcmread(p).SOPInstanceUID for p in ps] for ps in (a, b, c)]
    assert uids[0] == uids[1] and uids[0] != uids[2] and len(set(uids[0])) == 5


def test_writer_refuses_a_non_empty_folder(series, volume):
    with pytest.raises(VolumeError, match="not an empty folder"):
        write_dicom_series(volume, series)


# --- refusals --------------------------------------------------------------------------------


def _mixed_series(folder):
    for path in _files(folder)[:2]:
        _edit(path, lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.4.5"))


def _all(change):
    def apply(folder):
        for path in _files(folder):
            _edit(path, change)

    return apply


def _one(index, change):
    def apply(folder):
        _edit(_files(folder)[index], change)

    return apply


def _tilt(folder):
    for k, path in enumerate(_files(folder)):

        def shift(ds, k=k):
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y + 4.0 * k, z]  # 38.7°: more than MAX_TILT_DEG

        _edit(path, shift)


def _multi_frame(ds):
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2


def _new_uid_at_same_place(folder):
    src = _files(folder)[2]
    dst = folder / "copy.dcm"
    shutil.copy(src, dst)
    _edit(dst, lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))


def _only_one(folder):
    for path in _files(folder)[1:]:
        path.unlink()


def _empty(folder):
    for path in _files(folder):
        path.unlink()
    (folder / "readme.txt").write_text("nothing to see")


def _shift_one(ds):
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 1.0]


REFUSALS = {
    "mixed series": (_mixed_series, "mixed series: 2 series in"),
    "MR": (_all(lambda ds: setattr(ds, "Modality", "MR")), "modality MR, expected CT"),
    "localizer": (
        _all(lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"])),
        "localizer",
    ),
    "gantry tilt": (_tilt, "gantry tilt"),
    "missing slice": (
        lambda folder: _files(folder)[2].unlink(),
        r"missing slices: gap of 10 mm between positions -25 and -15 mm .*expected 5 mm",
    ),
    "non-uniform": (_one(2, _shift_one), "non-uniform slice spacing"),
    "orientation": (
        _one(3, lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0.995, 0.0998749])),
        "inconsistent ImageOrientationPatient",
    ),
    "pixel spacing": (
        _one(1, lambda ds: setattr(ds, "PixelSpacing", [0.5, 0.4])),
        "inconsistent PixelSpacing",
    ),
    "image size": (_one(1, lambda ds: setattr(ds, "Rows", 31)), "inconsistent image size"),
    "truncated": (
        _one(1, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-400])),
        r"truncated pixel data in .*IM0002\.dcm: 2160 bytes, expected 2560",
    ),
    "single slice": (_only_one, "only one slice: a 2D image is not a CT volume"),
    "empty": (_empty, "no DICOM files in"),
    "multi-frame": (_one(0, _multi_frame), "multi-frame object .*IM0001"),
    "duplicate position": (_new_uid_at_same_place, "duplicate positions: "),
    "no position": (
        _one(4, lambda ds: delattr(ds, "ImagePositionPatient")),
        "no ImagePositionPatient",
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_broken_series_is_refused_with_one_clear_line(series, case):
    breaker, message = REFUSALS[case]
    breaker(series)
    with pytest.raises(DicomSeriesError, match=message) as err:
        read_dicom_series(series)
    assert "\n" not in str(err.value)


def _fake_compressed(series, transfer_syntax) -> None:
    def change(ds):
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])

    for path in _files(series):
        _edit(path, change)


def test_missing_decoder_names_the_transfer_syntax(series, monkeypatch):
    class Unavailable:
        is_available = False
        missing_dependencies = ("gdcm - requires gdcm>=3.0.10",)

    decoder = pydicom.pixels.get_decoder(JPEGLosslessSV1)
    if decoder.is_available:  # a plugin is installed here: pretend it is not
        monkeypatch.setattr(dicom_series, "get_decoder", lambda ts: Unavailable())
    _fake_compressed(series, JPEGLosslessSV1)
    with pytest.raises(
        DicomSeriesError,
        match=r"JPEG Lossless.*1\.2\.840\.10008\.1\.2\.4\.70.*no decoder installed",
    ):
        read_dicom_series(series)


def test_unsupported_transfer_syntax_is_named(series):
    _fake_compressed(series, MPEG4HP41)
    with pytest.raises(DicomSeriesError, match=r"transfer syntax MPEG-4 .* is not supported"):
        read_dicom_series(series)


def test_not_a_folder(tmp_path):
    with pytest.raises(DicomSeriesError, match="not a folder"):
        read_dicom_series(tmp_path / "absent")


@pytest.mark.integration
def test_dicom_modules_do_not_import_torch():
    code = (
        "import sys, ugss.runtime.dicom_series, ugss.runtime.dicom_write; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
