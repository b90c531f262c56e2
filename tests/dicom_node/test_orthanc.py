"""End to end with a real PACS: Orthanc pushes a CT series, the node answers with SEG and SR.

Orthanc runs from a temporary config on its own free ports (no plugins, remote access off,
called-AE and modality-host checks on, stores only from known modalities).
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest
from node_helpers import (
    DCIODVFY,
    ORTHANC,
    Orthanc,
    free_port,
    mask_from_seg,
    wait_until,
)
from typer.testing import CliRunner

from ugss.dicom_node.config import Destination, Peer
from ugss.dicom_node.sr import read_volume_ml
from ugss.runtime.dicom_series import read_dicom_series_with_refs
from ugss.runtime.infer_cli import app as infer_app
from ugss.runtime.segment import segment_volume

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)"),
]


@pytest.fixture
def orthanc_and_node(tmp_path, make_node):
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc")
    orthanc.start(modalities={"ugss": ["UGSS", "127.0.0.1", node_port]})
    try:
        node = make_node(
            port=node_port,
            peers=(Peer("ORTHANC", "127.0.0.1"),),
            destinations=(Destination("orthanc", "ORTHANC", "127.0.0.1", orthanc.dicom_port),),
        )
        yield orthanc, node
    finally:
        orthanc.stop()


def _results(orthanc: Orthanc, modality: str) -> list[dict]:
    return orthanc.find_series(Modality=modality)


def test_orthanc_push_gets_seg_and_sr_back(
    orthanc_and_node, series34, engine, model_path, tmp_path
):
    orthanc, node = orthanc_and_node
    assert orthanc.post("/modalities/ugss/echo", {}) is not None
    orthanc.upload(series34)
    series_uid = str(pydicom.dcmread(series34[0], stop_before_pixels=True).SeriesInstanceUID)
    orthanc.post(
        "/modalities/ugss/store",
        {"Resources": [orthanc.series_id(series_uid)], "Synchronous": True},
    )
    assert wait_until(lambda: _results(orthanc, "SEG") and _results(orthanc, "SR"), timeout=60)
    assert node.stats.stored == 34 and node.stats.refused == 0

    seg_series, sr_series = _results(orthanc, "SEG")[0], _results(orthanc, "SR")[0]
    seg_path, sr_path = tmp_path / "seg.dcm", tmp_path / "sr.dcm"
    seg_path.write_bytes(orthanc.instance_file(seg_series["Instances"][0]))
    sr_path.write_bytes(orthanc.instance_file(sr_series["Instances"][0]))
    # same study as the CT, so a viewer shows them together
    study_uid = str(pydicom.dcmread(series34[0], stop_before_pixels=True).StudyInstanceUID)
    assert pydicom.dcmread(seg_path).StudyInstanceUID == study_uid

    if DCIODVFY is None:
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    from node_helpers import dciodvfy_errors

    assert dciodvfy_errors(seg_path) == []
    assert dciodvfy_errors(sr_path) == []

    # voxel for voxel what ugss-infer writes for the same series (its mask on the source grid)
    volume, info = read_dicom_series_with_refs(series34[0].parent)
    out = CliRunner().invoke(
        infer_app,
        [str(series34[0].parent), "-o", str(tmp_path / "infer"), "--model", str(model_path),
         "--provider", "cpu", "--no-pictures"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    (mask_file,) = (tmp_path / "infer").glob("*_mask.nii.gz")
    infer_frames = np.asarray(nib.load(mask_file).dataobj).transpose(2, 1, 0) > 0
    mask = mask_from_seg(seg_path, list(info.sop_instance_uids))
    assert mask.any() and np.array_equal(mask, infer_frames)
    expected = segment_volume(volume, engine)
    assert np.array_equal(mask, info.frames(expected.mask))
    report = json.loads(next((tmp_path / "infer").glob("*_report.json")).read_text())
    value, low, high = read_volume_ml(pydicom.dcmread(sr_path))
    assert value == pytest.approx(expected.volume_ml, abs=1e-3)
    assert low <= value <= high
    assert value == pytest.approx(report["total_volume_ml"], abs=1e-3)
    assert (low, high) == pytest.approx(tuple(report["interval_ml"]), abs=1e-3)


def test_orthanc_rejects_results_from_an_unknown_node(tmp_path, make_node, series34):
    """The guard rails of the Orthanc config hold: only a registered modality may store."""
    orthanc = Orthanc(tmp_path / "orthanc").start(modalities={})
    try:
        node = make_node(
            destinations=(Destination("orthanc", "ORTHANC", "127.0.0.1", orthanc.dicom_port),),
            max_attempts=1,
        )
        from node_helpers import send_files

        assert send_files(node.address[1], series34) == [0] * 34
        assert wait_until(lambda: node.db.counts("outbox").get("failed") == 2, timeout=30)
        assert _results(orthanc, "SEG") == []
    finally:
        orthanc.stop()
