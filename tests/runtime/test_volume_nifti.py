"""NIfTI in any orientation lands on one canonical grid, and results go back onto the input grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations as nio

from ugss.errors import VolumeError
from ugss.runtime import read_nifti, read_volume, write_nifti
from ugss.runtime.volume import Volume, canonicalize


def _save_reoriented(volume: Volume, path, axcodes) -> None:
    """Store a canonical volume in another voxel order, with the affine that keeps it in place."""
    data_ijk = volume.hu.transpose(2, 1, 0)
    img = nib.Nifti1Image(np.rint(data_ijk).astype(np.int16), volume.affine)
    ornt = nio.ornt_transform(nio.io_orientation(volume.affine), nio.axcodes2ornt(axcodes))
    nib.save(img.as_reoriented(ornt), str(path))


@pytest.mark.parametrize(
    "axcodes", [("L", "P", "S"), ("R", "A", "S"), ("P", "L", "I"), ("S", "R", "P")]
)
def test_any_orientation_reads_to_the_same_canonical_array(tmp_path, asym_volume, axcodes):
    path = tmp_path / "scan.nii.gz"
    _save_reoriented(asym_volume, path, axcodes)
    vol = read_nifti(path)
    assert vol.shape == asym_volume.shape
    np.testing.assert_array_equal(vol.hu, asym_volume.hu)
    np.testing.assert_allclose(vol.affine, asym_volume.affine, atol=1e-6)
    assert vol.spacing == pytest.approx((5.0, 0.45, 0.4))
    assert vol.source.format == "nifti"


@pytest.mark.parametrize("axcodes", [("L", "P", "S"), ("R", "A", "S"), ("P", "L", "I")])
def test_mask_written_back_lands_on_the_input_grid(tmp_path, asym_volume, axcodes):
    src = tmp_path / "scan.nii"
    _save_reoriented(asym_volume, src, axcodes)
    vol = read_nifti(src)
    mask = (vol.hu > 0).astype(np.uint8)
    out = write_nifti(tmp_path / "mask.nii.gz", mask, like=vol)
    src_img, out_img = nib.load(str(src)), nib.load(str(out))
    assert out_img.shape == src_img.shape
    np.testing.assert_allclose(out_img.affine, src_img.affine, atol=1e-6)
    # voxel for voxel, the mask marks exactly the input voxels above 0 HU
    np.testing.assert_array_equal(np.asarray(out_img.dataobj) > 0, np.asarray(src_img.dataobj) > 0)


def test_volume_ml_is_voxel_count_times_voxel_volume(asym_volume):
    mask = np.zeros(asym_volume.shape, dtype=bool)
    mask[1:3, 4:8, 5:15] = True  # 2 * 4 * 10 = 80 voxels
    assert asym_volume.voxel_volume_ml == pytest.approx(5.0 * 0.45 * 0.4 / 1000)
    assert asym_volume.volume_ml(mask) == pytest.approx(80 * 5.0 * 0.45 * 0.4 / 1000)


def test_scaled_nifti_gives_hu(tmp_path, asym_volume):
    img = nib.Nifti1Image(np.zeros((32, 24, 5), dtype=np.int16) + 100, asym_volume.affine)
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, str(tmp_path / "s.nii"))
    assert np.all(read_nifti(tmp_path / "s.nii").hu == -924.0)


def test_singleton_fourth_axis_is_squeezed(tmp_path, asym_volume):
    img = nib.Nifti1Image(np.zeros((32, 24, 5, 1), dtype=np.int16), asym_volume.affine)
    nib.save(img, str(tmp_path / "s.nii"))
    assert read_nifti(tmp_path / "s.nii").shape == (5, 24, 32)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("hello"), "not a readable NIfTI"),
        (
            lambda p: nib.save(nib.Nifti1Image(np.zeros((8, 8), np.int16), np.eye(4)), str(p)),
            "expected a 3D image",
        ),
        (
            lambda p: nib.save(
                nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.int16), np.eye(4)), str(p)
            ),
            "expected a 3D image",
        ),
    ],
    ids=["missing", "not-nifti", "2d", "4d"],
)
def test_bad_nifti_raises_one_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.nii"
    make(path)
    with pytest.raises(VolumeError, match=message):
        read_nifti(path)


def test_read_volume_refuses_unknown_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(VolumeError, match="not a NIfTI file"):
        read_volume(tmp_path / "notes.txt")
    dcm = tmp_path / "one.dcm"
    dcm.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 10)
    with pytest.raises(VolumeError, match="single DICOM file"):
        read_volume(dcm)
    with pytest.raises(VolumeError, match="no such file"):
        read_volume(tmp_path / "missing.nii")


def test_corrupt_gzip_is_named(tmp_path, asym_volume):
    good = tmp_path / "good.nii.gz"
    write_nifti(good, asym_volume.hu, like=asym_volume)
    data = good.read_bytes()
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:])
    with pytest.raises(VolumeError, match="corrupt or truncated gzip"):
        read_nifti(bad)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
def test_gzip_fast_path_reads_like_nibabel(tmp_path, asym_volume, suffix, image_class):
    """Scaling, byte order, NIfTI-2 and a singleton 4th axis: the same HU as nibabel gives."""
    stored = np.arange(32 * 24 * 5, dtype=np.int16).reshape(32, 24, 5, order="F") % 700
    img = image_class(stored.astype(">i2")[..., None], asym_volume.affine)
    img.header.set_slope_inter(0.5, -1024.0)
    path = tmp_path / f"s{suffix}"
    nib.save(img, str(path))
    volume = read_nifti(path)
    reference = nib.load(str(path))
    expected, affine, _ = canonicalize(reference.get_fdata()[..., 0], reference.affine)
    np.testing.assert_array_equal(volume.hu, expected)
    np.testing.assert_array_equal(volume.affine, affine)


def test_truncated_voxels_in_a_valid_gzip_are_refused(tmp_path, asym_volume):
    import gzip

    good = tmp_path / "good.nii.gz"
    write_nifti(good, asym_volume.hu, like=asym_volume)
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:-100]))
    with pytest.raises(VolumeError, match="not a readable NIfTI"):
        read_nifti(short)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("layout", ["fortran", "c", "flipped"])
def test_gzip_writer_is_byte_identical_to_nibabel(dtype, layout):
    import gzip

    from ugss.runtime.nifti import nifti_gz_bytes

    data = np.random.default_rng(0).integers(0, 100, (20, 12, 7)).astype(dtype)
    data = {"fortran": np.asfortranarray(data), "c": data, "flipped": data[::-1, :, ::-1]}[layout]
    affine = np.diag([-0.5, -0.5, 3.0, 1.0])

    def image():
        img = nib.Nifti1Image(data, affine)
        img.header.set_slope_inter(1 / 255 if dtype == np.uint8 else 1.0, 0.0)
        img.set_sform(affine, code=1)
        return img

    assert gzip.decompress(nifti_gz_bytes(image())) == image().to_bytes()


def test_gzip_of_several_members_reads_whole(tmp_path, asym_volume):
    """``cat a.gz b.gz`` is valid gzip: the voxels split across members still all arrive."""
    import gzip

    whole = tmp_path / "whole.nii.gz"
    write_nifti(whole, asym_volume.hu, like=asym_volume, dtype=np.int16)
    raw = gzip.decompress(whole.read_bytes())
    split = tmp_path / "split.nii.gz"
    split.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(read_nifti(split).hu, read_nifti(whole).hu)
