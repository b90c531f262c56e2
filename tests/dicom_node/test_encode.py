"""SEG, SR and overlay as written by a job: standard-valid (dciodvfy), read back, empty case."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from node_helpers import DCIODVFY, dciodvfy_errors, mask_from_seg, om

from ugss.dicom_node.jobs import process_series
from ugss.dicom_node.sr import read_volume_ml
from ugss.runtime.dicom_series import read_dicom_series_with_refs, write_dicom_series


@pytest.fixture(scope="module")
def empty_series(tmp_path_factory):
    vol, _ = om.phantom_volume((8, 64, 64), spacing=(5.0, 3.0, 3.0), bleed=False)  # head-sized
    return write_dicom_series(vol, tmp_path_factory.mktemp("ct") / "empty", uid_entropy="e")


def _run(folder, engine, results, **kw):
    _, info = read_dicom_series_with_refs(folder)
    h = info.headers[0]
    out = process_series(
        folder,
        study_uid=h.StudyInstanceUID,
        series_uid=h.SeriesInstanceUID,
        version=1,
        engine=engine,
        results=results,
        **kw,
    )
    return out, info


@pytest.mark.integration
def test_outputs_are_valid_and_read_back(series34, engine, tmp_path):
    out, info = _run(series34[0].parent, engine, tmp_path, overlay=True)
    kinds = [f.kind for f in out.files]
    assert kinds[:2] == ["seg", "sr"] and set(kinds[2:]) == {"overlay"} and len(kinds) > 2
    seg = next(f.path for f in out.files if f.kind == "seg")
    sr = next(f.path for f in out.files if f.kind == "sr")
    mask = mask_from_seg(seg, list(info.sop_instance_uids))
    assert mask.any()
    # one overlay image per slice with hemorrhage
    assert len(kinds) - 2 == int(mask.any(axis=(1, 2)).sum())
    value, low, high = read_volume_ml(pydicom.dcmread(sr))
    assert value == pytest.approx(out.summary["volume_ml"], abs=1e-3)
    assert low <= value <= high
    overlay = pydicom.dcmread(out.files[2].path)
    assert overlay.BurnedInAnnotation == "YES" and overlay.PhotometricInterpretation == "RGB"
    assert overlay.StudyInstanceUID == info.headers[0].StudyInstanceUID
    if DCIODVFY is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    for f in out.files[:3]:
        assert dciodvfy_errors(f.path) == [], f.kind


@pytest.mark.integration
def test_no_hemorrhage_gives_an_empty_seg_and_zero_volume(empty_series, engine, tmp_path):
    out, info = _run(empty_series[0].parent, engine, tmp_path)
    seg = next(f.path for f in out.files if f.kind == "seg")
    mask = mask_from_seg(seg, list(info.sop_instance_uids))
    assert mask.shape == (8, 64, 64) and not mask.any()
    value, low, high = read_volume_ml(pydicom.dcmread(out.files[1].path))
    assert value == 0.0 and low == 0.0 and high >= 0.0
    if DCIODVFY is not None:
        assert dciodvfy_errors(seg) == []
        assert dciodvfy_errors(out.files[1].path) == []


@pytest.mark.slow
def test_deterministic_mode_has_no_interval(series34, engine, tmp_path):
    out, _ = _run(series34[0].parent, engine, tmp_path, use_mc=False)
    value, low, high = read_volume_ml(pydicom.dcmread(out.files[1].path))
    assert low == value == high
    assert out.summary["interval_ml"] is None
    assert np.isfinite(value)
