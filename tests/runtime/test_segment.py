"""segment_volume, post-processing and the report, on real onnxruntime sessions and a phantom."""

from __future__ import annotations

import json

import numpy as np
import onnx_models as om
import pytest

from ugss.errors import ConfigError, VolumeError
from ugss.runtime.engines import EngineOutput, OnnxEngine
from ugss.runtime.postprocess import (
    bounding_box,
    describe_components,
    head_midline_x,
    remove_small_components,
)
from ugss.runtime.report import build_report
from ugss.runtime.segment import check_ct_intensities, segment_volume
from ugss.runtime.volume import Volume


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    return {
        "det": OnnxEngine(om.save(om.build_det_model(om.det_info()), d / "det.onnx")),
        "mc": OnnxEngine(om.save(om.build_mc_model(om.mc_info()), d / "mc.onnx")),
    }


@pytest.fixture(scope="module")
def bleed():
    return om.phantom_volume()


class Recording:
    """Wraps an engine and records the batch sizes it is given."""

    def __init__(self, engine):
        self.inner, self.info, self.sizes = engine, engine.info, []

    @property
    def description(self):
        return "recording"

    def reseed(self, seed):
        self.inner.reseed(seed)

    def run(self, batch) -> EngineOutput:
        self.sizes.append(batch.shape[0])
        return self.inner.run(batch)


def test_mc_segmentation_finds_the_bleed(engines, bleed):
    volume, truth = bleed
    seg = segment_volume(volume, engines["mc"])
    assert seg.mask.shape == seg.prob.shape == seg.entropy.shape == volume.shape
    assert seg.mask.dtype == bool
    # eq. 12 on the final mask
    assert seg.volume_ml == pytest.approx(np.count_nonzero(seg.mask) * volume.voxel_volume_ml)
    assert seg.volume_ml == pytest.approx(volume.volume_ml(truth), rel=0.1)
    dice = 2 * (seg.mask & truth).sum() / (seg.mask.sum() + truth.sum())
    assert dice > 0.9
    lo, hi = seg.interval_ml
    assert lo <= seg.volume_ml <= hi and hi > lo
    assert len(seg.sample_volumes_ml) == engines["mc"].info.mc_samples
    (comp,) = seg.components
    assert comp.side == "left" and comp.left_fraction > 0.95
    assert comp.volume_ml == pytest.approx(seg.volume_ml)
    assert comp.slice_first == min(seg.slices_involved) and comp.slice_last == max(
        seg.slices_involved
    )
    assert 0 <= comp.mean_uncertainty_bits < 0.5
    assert set(seg.timings) == {"intracranial", "preprocess", "model", "resample", "postprocess"}


def test_hemorrhage_free_scan_reports_none(engines):
    volume, _ = om.phantom_volume(bleed=False)
    for engine in engines.values():
        seg = segment_volume(volume, engine)
        assert not seg.hemorrhage_present and seg.volume_ml == 0.0
        assert seg.components == () and seg.slices_involved == ()
        if seg.interval_ml is not None:
            assert seg.interval_ml == (0.0, 0.0)
        report = build_report(volume, seg, engine)
        assert report.hemorrhage_present is False and "no hemorrhage" in report.summary_line()


def test_slabs_bound_the_batch_and_do_not_change_the_result(engines, bleed):
    volume, _ = bleed
    rec = Recording(engines["det"])
    a = segment_volume(volume, rec, batch_size=3)
    assert rec.sizes == [3, 3, 3, 1]
    b = segment_volume(volume, engines["det"], batch_size=10)
    np.testing.assert_allclose(a.prob, b.prob, atol=1e-6)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_mc_result_is_reproducible_per_seed(engines, bleed):
    volume, _ = bleed
    a = segment_volume(volume, engines["mc"], seed=1)
    b = segment_volume(volume, engines["mc"], seed=1)
    c = segment_volume(volume, engines["mc"], seed=2)
    assert a.sample_volumes_ml == b.sample_volumes_ml != c.sample_volumes_ml


def test_deterministic_use_of_mc_model_drops_mc_outputs(engines, bleed):
    volume, _ = bleed
    seg = segment_volume(volume, engines["mc"], use_mc=False)
    assert seg.entropy is None and seg.interval_ml is None and seg.sample_volumes_ml is None
    assert seg.hemorrhage_present


def test_non_square_planes_and_native_grid(engines):
    hu, truth = om.phantom_hu((6, 100, 128))
    volume = Volume(hu=hu, affine=om.phantom_affine((3.0, 0.5, 0.7)))
    seg = segment_volume(volume, engines["det"])
    assert seg.mask.shape == volume.shape
    assert (seg.mask & truth).sum() > 0.8 * truth.sum()


def test_non_ct_intensities_are_refused(engines):
    rng = np.random.default_rng(0)
    mr_like = rng.uniform(0, 1000, (6, 64, 64)).astype(np.float32)
    with pytest.raises(VolumeError, match="not CT"):
        segment_volume(Volume(hu=mr_like, affine=np.eye(4)), engines["det"])
    raw = om.phantom_hu((6, 64, 64))[0] + 1024 + 6000  # unscaled stored values
    with pytest.raises(VolumeError):
        check_ct_intensities(Volume(hu=raw, affine=np.eye(4)))
    nan = om.phantom_hu((6, 64, 64))[0]
    nan[0, 0, 0] = np.nan
    with pytest.raises(VolumeError, match="NaN"):
        check_ct_intensities(Volume(hu=nan, affine=np.eye(4)))


def test_speck_removal_is_in_millilitres():
    mask = np.zeros((6, 40, 40), dtype=bool)
    mask[1:4, 5:15, 5:15] = True  # 300 voxels
    mask[4, 30:32, 30:32] = True  # 4 voxels
    fine = remove_small_components(mask, voxel_ml=0.001, min_ml=0.01)  # 4 µL speck < 10 µL
    assert fine.mask.sum() == 300 and fine.removed_components == 1
    assert fine.removed_ml == pytest.approx(0.004)
    coarse = remove_small_components(mask, voxel_ml=0.01, min_ml=0.01)  # 40 µL ≥ 10 µL: kept
    assert coarse.mask.sum() == 304 and coarse.removed_components == 0
    assert remove_small_components(mask, 0.001, 0.0).mask.sum() == 304
    assert mask[4, 30, 30]  # the input is untouched
    with pytest.raises(ConfigError):
        remove_small_components(mask, 0.001, -1.0)


def test_speck_removal_by_slices():
    mask = np.zeros((6, 40, 40), dtype=bool)
    mask[1:3, 5:15, 5:15] = True  # two slices
    mask[4, 20:35, 20:35] = True  # one slice, larger
    two = remove_small_components(mask, voxel_ml=0.001, min_ml=0.0, min_slices=2)
    assert two.count == 1 and two.removed_components == 1 and not two.mask[4].any()
    assert two.removed_ml == pytest.approx(0.225)
    assert remove_small_components(mask, 0.001, 0.0, min_slices=1).count == 2
    assert remove_small_components(mask, 0.001, 0.0, min_slices=3).count == 0
    with pytest.raises(ConfigError, match="1 slice"):
        remove_small_components(mask, 0.001, 0.0, min_slices=0)


def test_a_finding_on_one_slice_is_dropped_by_default(engines):
    volume, _ = om.phantom_volume(bleed=False)
    hu = volume.hu.copy()
    z, y, x = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
    spot = ((y - 60) ** 2 + (x - 80) ** 2 < 12**2) & (z == 5)
    hu[spot] = 75.0  # a dense rim on one 5 mm slice
    one_slice = Volume(hu=hu, affine=volume.affine)
    seg = segment_volume(one_slice, engines["det"])
    assert seg.volume_ml == 0.0 and seg.removed_components == 1 and seg.removed_ml > 0.5
    report = build_report(one_slice, seg, engines["det"])
    assert "fewer than 2 adjacent slices" in report.to_markdown()
    kept = segment_volume(one_slice, engines["det"], min_component_slices=1)
    assert kept.volume_ml == pytest.approx(seg.removed_ml) and len(kept.components) == 1


def test_components_sides_and_connectivity():
    hu, _ = om.phantom_hu((5, 64, 64), bleed=False)
    volume = Volume(hu=hu, affine=om.phantom_affine((5.0, 1.0, 1.0)))
    mid = head_midline_x(hu)
    assert mid == pytest.approx(31.5, abs=1.0)
    mask = np.zeros(volume.shape, dtype=bool)
    mask[1:3, 20:30, 40:50] = True  # patient left (high column)
    mask[2, 20:25, 10:14] = True  # patient right
    mask[1:4, 40:44, 28:36] = True  # straddles the midline
    mask[3, 10, 10] = mask[4, 11, 11] = True  # corner-connected pair
    prob = mask.astype(np.float32)
    comps = describe_components(mask, volume, prob, None, midline_x=mid)
    assert [c.side for c in comps][:3] == ["left", "midline", "right"]
    assert comps[0].volume_ml == pytest.approx(200 * volume.voxel_volume_ml)
    assert comps[-1].voxels == 2  # 26-connectivity joins the corner pair
    # centroid (world RAS) and slice range of the left component, checked independently
    from scipy import ndimage

    z, y, x = ndimage.center_of_mass(mask[:, :, 40:])
    expected = volume.affine @ np.array([x + 40, y, z, 1.0])
    np.testing.assert_allclose(comps[0].centroid_ras_mm, expected[:3], atol=0.01)
    assert (comps[0].slice_first, comps[0].slice_last) == (1, 2)
    assert comps[0].mean_prob == pytest.approx(1.0)
    assert len(describe_components(mask, volume, prob, None, midline_x=mid, connectivity=1)) == 5
    assert bounding_box(np.zeros((2, 2, 2), bool)) is None


def test_report_json_and_markdown(engines, bleed):
    volume, _ = bleed
    seg = segment_volume(volume, engines["mc"])
    report = build_report(volume, seg, engines["mc"], timings={"read": 0.1, "write": 0.2})
    data = json.loads(report.to_json())
    assert data["hemorrhage_present"] is True
    assert data["total_volume_ml"] == pytest.approx(seg.volume_ml)
    assert data["interval_ml"][0] <= data["total_volume_ml"] <= data["interval_ml"][1]
    assert data["model"]["name"] == "tiny-mc" and data["model"]["version"] == "3"
    assert data["model"]["checkpoint_sha256"] == "ab" * 32 and data["model"]["mode"] == "mc"
    assert data["scan"]["shape_zyx"] == list(volume.shape)
    assert data["components"][0]["side"] == "left"
    assert list(data["timings_s"])[:5] == [
        "read",
        "intracranial",
        "preprocess",
        "model",
        "resample",
    ]
    # the phantom is a 10-slice slab: its intracranial space is cut at both ends
    assert [f["code"] for f in data["qc_flags"]] == ["truncated_scan"]
    assert data["assessed"] is True and 100 < data["intracranial_ml"] < 200
    md = report.to_markdown()
    assert "MC interval" in md and "| 1 |" in md and "not for clinical use" in md


def test_qc_flags(engines):
    hu, _ = om.phantom_hu((8, 64, 64), bleed=False)
    # unusual spacing
    odd = Volume(hu=hu, affine=om.phantom_affine((12.0, 2.0, 2.0)))
    codes = {
        f.code
        for f in build_report(odd, segment_volume(odd, engines["det"]), engines["det"]).qc_flags
    }
    assert codes == {"unusual_spacing", "truncated_scan"}
    # a head cut by the field of view
    cut = Volume(hu=hu[:, 8:-8, 8:-8].copy(), affine=om.phantom_affine((5.0, 0.9, 0.9)))
    report = build_report(cut, segment_volume(cut, engines["det"]), engines["det"])
    assert "truncated_fov" in {f.code for f in report.qc_flags}
    # blood at the model's decision boundary: the MC samples disagree
    hu_b, _ = om.phantom_hu((8, 128, 128), bleed_hu=54.0)
    amb = Volume(hu=hu_b, affine=om.phantom_affine((5.0, 0.9, 0.9)))
    report = build_report(amb, segment_volume(amb, engines["mc"]), engines["mc"])
    assert "high_uncertainty" in {f.code for f in report.qc_flags}
    # no bone at all: segmentable, but flagged
    soft = hu.copy()
    soft[soft > 300] = 40.0
    plain = Volume(hu=soft, affine=om.phantom_affine((5.0, 0.9, 0.9)))
    report = build_report(plain, segment_volume(plain, engines["det"]), engines["det"])
    assert "non_ct_like_intensities" in {f.code for f in report.qc_flags}


def test_interval_calibration_is_read_from_the_model_metadata(tmp_path, bleed):
    """Without calibration metadata the interval says it is uncalibrated; with it, the runtime
    widens the same samples by the stored conformal scale and floor and says so."""
    from ugss.runtime.interval import IntervalCalibration

    volume, _ = bleed
    cal = IntervalCalibration(0.9, 3.0, 1.5, 40, 0.9, "test cohort")
    plain = OnnxEngine(om.save(om.build_mc_model(om.mc_info()), tmp_path / "plain.onnx"))
    info = om.mc_info(interval_calibration=cal)
    calibrated = OnnxEngine(om.save(om.build_mc_model(info), tmp_path / "cal.onnx"))
    assert calibrated.info.interval_calibration == cal
    raw = segment_volume(volume, plain)
    seg = segment_volume(volume, calibrated)
    assert raw.interval_method.startswith("uncalibrated")
    assert "split-conformal" in seg.interval_method
    assert seg.sample_volumes_ml == raw.sample_volumes_ml and seg.volume_ml == raw.volume_ml
    half = 3.0 * (raw.interval_ml[1] - raw.interval_ml[0]) / 2 + 1.5
    assert seg.interval_ml == pytest.approx((max(seg.volume_ml - half, 0), seg.volume_ml + half))
    report = build_report(volume, seg, calibrated)
    assert "split-conformal" in report.interval_method
