"""Study flow: a multi-series head CT study gets one answer, from the right series.

Through a real Orthanc (the issue's six-series study) and through the stand-in PACS (the
rules' outcomes one study at a time: bone-kernel only, not-kept series only, late series).
"""

from __future__ import annotations

import time

import pydicom
import pytest
from node_helpers import (
    DCIODVFY,
    ORTHANC,
    Orthanc,
    dciodvfy_errors,
    free_port,
    head_study,
    phantom_series,
    send_files,
    series_uid_of,
    wait_until,
)
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from ugss.dicom_node.cli import app
from ugss.dicom_node.config import Destination, Peer
from ugss.dicom_node.sr import read_not_assessed, read_series_notes, read_volume_ml

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    uid = generate_uid(entropy_srcs=["six-series"])
    return uid, head_study(tmp_path_factory.mktemp("study"), uid)


def _classes(datasets) -> list[str]:
    return sorted("SEG" if d.SOPClassUID == SEG_CLASS else "SR" for d in datasets)


@pytest.mark.integration
@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)")
def test_six_series_study_from_orthanc_gets_one_seg_and_one_sr(tmp_path, make_node, study):
    study_uid, series = study
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc")
    orthanc.start(modalities={"ugss": ["UGSS", "127.0.0.1", node_port]})
    try:
        quiet = 2.0
        node = make_node(
            port=node_port, quiet_period_s=quiet, peers=(Peer("ORTHANC", "127.0.0.1"),),
            destinations=(Destination("orthanc", "ORTHANC", "127.0.0.1", orthanc.dicom_port),),
        )  # fmt: skip
        orthanc.upload([p for paths in series.values() for p in paths])
        (found,) = orthanc.post("/tools/lookup", study_uid.encode())
        orthanc.post("/modalities/ugss/store", {"Resources": [found["ID"]], "Synchronous": True})
        pushed = time.time()  # the last instance is acknowledged when the push returns
        assert wait_until(
            lambda: orthanc.find_series(Modality="SEG") and orthanc.find_series(Modality="SR")
            and node.db.counts("outbox").get("sent") == 2,
            timeout=90,
        )  # fmt: skip
        turnaround = time.time() - pushed
        print(f"turnaround {turnaround:.1f} s (quiet period {quiet:g} s)")
        assert turnaround <= quiet + 10.0
        time.sleep(quiet + 1)  # nothing else follows
        segs, srs = orthanc.find_series(Modality="SEG"), orthanc.find_series(Modality="SR")
        ours = [s for s in srs if "UGSS" in s["MainDicomTags"].get("SeriesDescription", "")]
        assert len(segs) == 1 and len(ours) == 1
        assert len(segs[0]["Instances"]) == 1 and len(ours[0]["Instances"]) == 1
        sr_path, seg_path = tmp_path / "sr.dcm", tmp_path / "seg.dcm"
        sr_path.write_bytes(orthanc.instance_file(ours[0]["Instances"][0]))
        seg_path.write_bytes(orthanc.instance_file(segs[0]["Instances"][0]))
        sr = pydicom.dcmread(sr_path)
        computed, passed = read_series_notes(sr)
        assert computed == series_uid_of(series["soft5"])
        assert read_volume_ml(sr)[0] >= 0
        expect = {
            "bone5": "sharp kernel H70H", "thin": "suitable, but #2 Head 5mm soft was chosen",
            "localizer": "localizer image", "coronal": "reformat: not an axial image",
            "dose": "is not single-frame CT Image",
        }  # fmt: skip
        for name, words in expect.items():
            assert words in passed[series_uid_of(series[name])], (name, passed)
        seg = pydicom.dcmread(seg_path)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == computed
        assert node.stats.ignored == 1 + 24 + 1 and node.stats.refused == 0
        status = CliRunner().invoke(app, ["status", "--spool", str(node.config.spool)])
        assert status.exit_code == 0, status.output
        assert "STUDIES" in status.output and "sharp kernel H70H" in status.output
        assert "chosen" in status.output
        if DCIODVFY is not None:
            assert dciodvfy_errors(sr_path) == []
    finally:
        orthanc.stop()


def test_bone_kernel_only_study_gets_a_not_assessed_report_and_no_seg(tmp_path, make_node, pacs):
    uid = generate_uid()
    bone = phantom_series(tmp_path / "b", uid, 3, "Head bone", kernel="BONE", sharp=True)
    unnamed = phantom_series(tmp_path / "u", uid, 4, "Head", kernel="", sharp=True)
    node = make_node(pacs=pacs)
    assert send_files(node.address[1], bone + unnamed) == [0] * 68
    (sr,) = pacs.wait_for(1)
    time.sleep(node.config.quiet_period_s * 3)
    assert _classes(pacs.received) == ["SR"]
    assert read_not_assessed(sr).startswith("not assessed: no suitable series")
    _, passed = read_series_notes(sr)
    assert "sharp kernel BONE" in passed[series_uid_of(bone)]
    assert "sharp reconstruction: noise" in passed[series_uid_of(unnamed)]
    assert sr.StudyInstanceUID == uid and sr.PatientID == "UGSS-TEST"
    with pytest.raises(ValueError):
        read_volume_ml(sr)
    assert node.db.counts("series") == {"passed": 2}


def test_study_of_unkept_series_only_is_answered_not_assessed(tmp_path, make_node, pacs, study):
    _, series = study
    node = make_node(pacs=pacs)
    assert send_files(node.address[1], series["localizer"] + series["dose"]) == [0, 0]
    (sr,) = pacs.wait_for(1)
    assert read_not_assessed(sr).startswith("not assessed")
    assert set(read_series_notes(sr)[1]) == {
        series_uid_of(series["localizer"]),
        series_uid_of(series["dose"]),
    }
    time.sleep(node.config.quiet_period_s * 3)
    assert len(pacs.received) == 1


def test_mixed_kernels_and_contrast_are_passed_over(tmp_path, make_node, pacs):
    uid = generate_uid()
    mixed = phantom_series(tmp_path / "m", uid, 2, "Head")
    ds = pydicom.dcmread(mixed[5])  # one slice of another kernel
    ds.ConvolutionKernel = "BONE"
    ds.save_as(mixed[5])
    contrast = phantom_series(tmp_path / "c", uid, 3, "Head", ContrastBolusAgent="IOMEPROL")
    cta = phantom_series(tmp_path / "a", uid, 4, "CTA head")
    soft = phantom_series(tmp_path / "s", uid, 5, "Head soft")
    node = make_node(pacs=pacs)
    assert send_files(node.address[1], mixed + contrast + cta + soft) == [0] * 136
    got = pacs.wait_for(2)
    sr = next(d for d in got if d.SOPClassUID == SR_CLASS)
    computed, passed = read_series_notes(sr)
    assert computed == series_uid_of(soft)
    assert passed[series_uid_of(mixed)].startswith("mixed kernels")
    assert passed[series_uid_of(contrast)] == "contrast (ContrastBolusAgent IOMEPROL)"
    assert passed[series_uid_of(cta)] == "contrast (CTA in the series description)"


def test_late_series_after_the_answer_is_passed_over(tmp_path, make_node, pacs):
    """Documented rule (study.py): once a study is answered from a series, a late series is
    not answered again, even one the rules would prefer; a late instance of the answered
    series gives a new version."""
    uid = generate_uid()
    thin = phantom_series(tmp_path / "t", uid, 4, "Head thin", thickness=1.25)
    soft = phantom_series(tmp_path / "s", uid, 2, "Head 5mm")
    node = make_node(pacs=pacs)
    port = node.address[1]
    assert send_files(port, thin[:-1]) == [0] * (len(thin) - 1)
    assert _classes(pacs.wait_for(2)) == ["SEG", "SR"]
    assert send_files(port, soft) == [0] * 34  # late, and nearer the preferred 5 mm
    assert wait_until(lambda: any(r["state"] == "passed" for r in node.db.rows("series")))
    time.sleep(node.config.quiet_period_s * 3)
    assert len(pacs.received) == 2
    row = next(r for r in node.db.rows("series") if r["series_uid"] == series_uid_of(soft))
    assert row["error"].startswith("late series: the study was answered from #4 Head thin")
    assert send_files(port, thin[-1:]) == [0]  # a late instance of the answered series
    got = pacs.wait_for(4)
    assert len(got) == 4 and got[2].SeriesDescription.endswith("v2")
    assert read_series_notes(next(d for d in got[2:] if d.SOPClassUID == SR_CLASS))[0] == (
        series_uid_of(thin)
    )


def test_select_all_answers_every_suitable_series(tmp_path, make_node, pacs):
    uid = generate_uid()
    a = phantom_series(tmp_path / "a", uid, 2, "Head 5mm")
    b = phantom_series(tmp_path / "b", uid, 3, "Head 5mm again")
    node = make_node(pacs=pacs, select="all")
    assert send_files(node.address[1], a + b) == [0] * 68
    assert _classes(pacs.wait_for(4)) == ["SEG", "SEG", "SR", "SR"]
