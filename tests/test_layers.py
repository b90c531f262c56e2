"""The deployment side never imports torch: checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

DEPLOYMENT_MODULES = ["ugss.runtime", "ugss.dicom_node"]


@pytest.mark.integration
@pytest.mark.parametrize("module", DEPLOYMENT_MODULES)
def test_deployment_module_does_not_import_torch(module):
    code = (
        f"import sys, importlib, pkgutil; m = importlib.import_module({module!r}); "
        "names = [i.name for i in pkgutil.walk_packages(m.__path__, m.__name__ + '.')]; "
        "[importlib.import_module(n) for n in names]; "
        "print('torch' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"], out.stdout + out.stderr
