"""Plots are real PNG files; importing ugss.evaluation pulls in neither torch nor pyplot."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eval_cases import filled

from ugss.evaluation import EvaluationAccumulator, write_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_write_plots_makes_pngs(summary, tmp_path):
    from ugss.evaluation import write_plots

    paths = write_plots(summary, tmp_path / "plots")
    assert sorted(p.name for p in paths) == ["bland_altman.png", "roc.png", "volume_regression.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 1000


def test_roc_skipped_when_undefined(tmp_path):
    import numpy as np

    from ugss.evaluation import write_plots

    acc = EvaluationAccumulator()
    acc.add("neg", np.zeros((2, 3, 3), bool), np.zeros((2, 3, 3), np.float32), 1.0)
    names = [p.name for p in write_plots(acc.summary(), tmp_path)]
    assert names == ["bland_altman.png", "volume_regression.png"]


def test_markdown_file(summary, tmp_path):
    path = write_markdown(summary, tmp_path / "report.md", title="demo")
    assert path.read_text(encoding="utf-8").startswith("# demo\n")


@pytest.mark.integration
def test_import_has_no_heavy_side_effects(tmp_path):
    code = (
        "import sys, importlib, pkgutil, ugss.evaluation as m\n"
        "mods = pkgutil.walk_packages(m.__path__, 'ugss.evaluation.')\n"
        "[importlib.import_module(i.name) for i in mods]\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'matplotlib')\n"
        "print(*[h in sys.modules for h in heavy])\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from eval_cases import filled\n"
        "m.write_plots(filled().summary(), sys.argv[2])\n"
        "print('matplotlib.pyplot' in sys.modules, 'torch' in sys.modules)\n"
    )
    here = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", code, here, str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"] * 6, out.stdout + out.stderr


def test_filled_helper_is_deterministic():
    assert filled().summary().to_dict() == filled().summary().to_dict()
