"""The scan report's words: an empty mask raises no uncertainty finding (issue 16 item 14)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_models as om

from ugss.runtime.engines import OnnxEngine
from ugss.runtime.report import build_report
from ugss.runtime.segment import segment_volume


def test_empty_mask_reports_no_mean_uncertainty_finding(tmp_path):
    engine = OnnxEngine(om.save(om.build_mc_model(om.mc_info()), tmp_path / "mc.onnx"))
    volume, _ = om.phantom_volume(bleed=False, seed=1)
    seg = segment_volume(volume, engine)
    assert not seg.mask.any()
    assert seg.entropy_q is not None
    # every voxel maximally uncertain, yet nothing segmented: nothing in the mask to doubt
    doubtful = dataclasses.replace(seg, entropy_q=np.full_like(seg.entropy_q, 255))
    report = build_report(volume, doubtful, engine)
    assert "high_uncertainty" not in {f.code for f in report.qc_flags}
    assert report.mean_uncertainty_bits is None and report.uncertain_volume_ml > 100
    md = report.to_markdown()
    assert "| Mean uncertainty in mask | n/a (empty mask) |" in md
    assert "Uncertain voxels (≥ 0.5 bits)" in md


def test_the_report_names_the_weights_the_model_holds(tmp_path):
    """Issue 16 item 3: which network (teacher or student) made the numbers, in both reports."""
    info = om.mc_info(training={"weights": "teacher", "labeled_fraction": 1.0})
    engine = OnnxEngine(om.save(om.build_mc_model(info), tmp_path / "mc.onnx"))
    volume, _ = om.phantom_volume(seed=2)
    report = build_report(volume, segment_volume(volume, engine), engine)
    assert report.to_dict()["model"]["weights"] == "teacher"
    assert "method ugss, teacher weights), used as" in report.to_markdown()
    bare = OnnxEngine(om.save(om.build_mc_model(om.mc_info()), tmp_path / "bare.onnx"))
    assert (
        "unrecorded weights"
        in build_report(volume, segment_volume(volume, bare), bare).to_markdown()
    )
