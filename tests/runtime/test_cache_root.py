"""One cache root: training's slice cache, the synthetic cohorts and the TensorRT engine cache
all live under ``ugss.cache_root.user_cache_root()``, which honours ``XDG_CACHE_HOME``."""

from __future__ import annotations

from pathlib import Path

import onnx_models as om

from ugss.cache_root import user_cache_root
from ugss.runtime import engines
from ugss.train.config import DataConfig
from ugss.train.synthetic import synthetic_cohort_dir


def test_xdg_cache_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_root() == tmp_path / "xdg" / "ugss"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty: the XDG default
    assert user_cache_root() == Path.home() / ".cache" / "ugss"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert user_cache_root() == Path.home() / ".cache" / "ugss"


def test_training_and_tensorrt_caches_share_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "xdg" / "ugss"
    assert synthetic_cohort_dir(DataConfig()).parent == root
    model = om.save(om.build_det_model(om.det_info()), tmp_path / "det.onnx")
    tensorrt, options = engines._tensorrt_providers(model, None, fp16=False)[0]
    assert tensorrt == engines.PROVIDERS["tensorrt"]
    assert options["trt_engine_cache_path"] == str(root / "trt")
    assert (root / "trt").is_dir()
    explicit = engines._tensorrt_providers(model, tmp_path / "mine", fp16=False)[0][1]
    assert explicit["trt_engine_cache_path"] == str(tmp_path / "mine")


def test_a_cohort_with_a_sharp_fraction_gets_its_own_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    natural = synthetic_cohort_dir(DataConfig())
    sharp = synthetic_cohort_dir(DataConfig(synth_sharp_fraction=0.35))
    assert sharp != natural and "-k0.35-" in sharp.name
