"""deploy/orthanc/walkthrough.py: the README's Orthanc walkthrough runs as written, without root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from deploy_helpers import ROOT

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc not installed"),
]


def test_walkthrough_gets_a_seg_and_an_sr_back_in_orthanc(tmp_path):
    work = tmp_path / "walk"
    run = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "orthanc" / "walkthrough.py"), "--exit",
         "--work", str(work)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "'UGSS hemorrhage SEG v1' and 'UGSS hemorrhage volume v1'" in run.stdout
    assert re.search(r"the SR says: hemorrhage \d+\.\d mL", run.stdout), run.stdout
    orthanc = json.loads((work / "orthanc.json").read_text())
    assert orthanc["StorageDirectory"].startswith(str(work))  # no /var/lib, no root
    assert (work / "spool" / "node.sqlite").is_file()  # the node's state stayed in the folder
    again = subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "orthanc" / "walkthrough.py"), "--work", str(work)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 1 and "is not empty" in again.stderr
