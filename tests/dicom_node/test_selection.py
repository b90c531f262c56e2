"""Study selection rules one by one (selection.py, study.py), without a network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from scipy import ndimage
from typer.testing import CliRunner

from ugss.dicom_node.cli import app
from ugss.dicom_node.config import load_config
from ugss.dicom_node.db import StudySeries
from ugss.dicom_node.selection import SelectionRules, SeriesFacts, choose, judge
from ugss.dicom_node.study import decide
from ugss.errors import ConfigError
from ugss.runtime.noise import noise_hu

sys.path.insert(0, str(Path(__file__).parents[1] / "runtime"))
import onnx_models as om

RULES = SelectionRules()


def facts(uid="1.1", **kw) -> SeriesFacts:
    base = dict(series_uid=uid, label=f"#{uid}", n_slices=34, kernels=("STANDARD",),
                thickness_mm=5.0, contrast_agent="", description="HEAD", body_part="HEAD",
                study_description="CT HEAD")  # fmt: skip
    return SeriesFacts(**{**base, **kw})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, ""),
        ({"kernels": ("BONE",)}, "sharp kernel BONE"),
        ({"kernels": ("H70H",)}, "sharp kernel H70H"),
        ({"kernels": ("H30S", "H70H")}, "mixed kernels (H30S, H70H)"),
        ({"kernels": ("",), "noise_hu": 30.0}, "sharp reconstruction: noise 30 HU"),
        ({"kernels": ("XYZ",), "noise_hu": 4.0}, ""),
        ({"contrast_agent": "IOMEPROL"}, "contrast (ContrastBolusAgent IOMEPROL)"),
        ({"contrast_agent": "NONE"}, ""),
        ({"description": "CTA HEAD"}, "contrast (CTA in the series description)"),
        ({"description": "HEAD POSTERIOR FOSSA"}, ""),  # a word, not a prefix
        ({"thickness_mm": 10.0}, "slice thickness 10 mm outside 0.5-6 mm"),
        ({"body_part": "CHEST"}, "not a head (BodyPartExamined CHEST)"),
        ({"body_part": "", "study_description": "CT ABDOMEN"}, "not a head (StudyDescription"),
        ({"body_part": "", "study_description": ""}, ""),
    ],
)
def test_each_rule_gives_its_reason(change, reason):
    got = judge(facts(**change), RULES)
    assert got.startswith(reason) if reason else got == ""


def test_best_prefers_the_training_thickness_and_falls_back_to_thin():
    five, thin = facts("1.5", thickness_mm=5.0), facts("1.1", thickness_mm=1.25, n_slices=136)
    got = {c.series_uid: c for c in choose([thin, five], RULES)}
    assert got["1.5"].chosen and not got["1.1"].chosen
    assert got["1.1"].reason == "suitable, but #1.5 was chosen (5 mm, nearer 5 mm)"
    bone = facts("1.5", kernels=("BONE",))
    got = {c.series_uid: c for c in choose([thin, bone], RULES)}
    assert got["1.1"].chosen and got["1.5"].reason.startswith("sharp kernel")
    assert [c.chosen for c in choose([thin, five], SelectionRules(mode="all"))] == [True, True]
    assert not any(c.chosen for c in choose([bone], RULES))


def test_noise_tells_a_bone_kernel_from_a_soft_one():
    vol, _ = om.phantom_volume((3, 96, 96), spacing=(5.0, 2.0, 2.0))
    soft = vol.hu[1]
    rng = np.random.default_rng(0)
    sharp = soft + 1.5 * (soft - ndimage.gaussian_filter(soft, 1)) + rng.normal(0, 25, soft.shape)
    assert noise_hu(soft) < 8 < RULES.sharp_noise_hu < 20 < noise_hu(sharp)
    assert noise_hu(np.full((64, 64), -1000.0)) is None  # no brain tissue: not measured


def _row(uid, state, job_state="", label=""):
    return StudySeries(uid, label or f"#{uid}", state, "", 34, job_state)


def test_policy_for_late_series_and_empty_studies():
    late = [_row("1.1", "done", "done"), _row("1.2", "receiving")]
    d = decide("9", late, {"1.2": facts("1.2")}, RULES)
    assert d.chosen == () and d.passed["1.2"].startswith("late series: the study was answered")
    assert d.not_assessed_on is None
    reopened = [_row("1.1", "receiving", "done"), _row("1.2", "receiving")]
    d = decide("9", reopened, {"1.1": facts("1.1", thickness_mm=1.0), "1.2": facts("1.2")}, RULES)
    assert d.chosen == ("1.1",) and "late series" in d.passed["1.2"]
    assert decide("9", late, {"1.2": facts("1.2")}, SelectionRules(mode="all")).chosen == ("1.2",)
    failed = [_row("1.1", "failed", "failed"), _row("1.2", "receiving")]
    assert decide("9", failed, {"1.2": facts("1.2")}, RULES).chosen == ("1.2",)
    ignored = [_row("1.3", "ignored")]
    assert decide("9", ignored, {}, RULES).not_assessed_on == "1.3"
    assert decide("9", ignored, {}, RULES, earlier_reports=1).not_assessed_on is None
    bone = [_row("1.4", "receiving"), _row("1.3", "ignored")]
    d = decide("9", bone, {"1.4": facts("1.4", kernels=("BONE",))}, RULES)
    assert d.not_assessed_on == "1.4" and d.chosen == ()


def test_rules_come_from_the_toml_and_print_config_shows_them(tmp_path):
    toml = tmp_path / "n.toml"
    toml.write_text(
        'select = "all"\nselect_thickness_mm = [1, 3]\nselect_sharp_kernels = ["fc30"]\n'
    )
    cfg = load_config(toml)
    assert cfg.selection_rules.mode == "all" and cfg.selection_rules.thickness_mm == (1.0, 3.0)
    assert cfg.selection_rules.sharp_kernels == ("FC30",)
    out = CliRunner().invoke(app, ["--config", str(toml), "--print-config", "--select", "best"])
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["select"] == "best" and shown["select_thickness_mm"] == [1.0, 3.0]
    assert "STANDARD" in shown["select_soft_kernels"]
    for bad in ('select = "some"', "select_thickness_mm = [3, 1]", "select_thickness_mm = [1]"):
        toml.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(toml)


def test_series_label_is_printable():
    from ugss.dicom_node.selection import series_label

    ds = Dataset()
    ds.SeriesNumber, ds.SeriesDescription = 3, "Kopf\u00e9 5mm"
    assert series_label(ds) == "#3 Kopf? 5mm"
