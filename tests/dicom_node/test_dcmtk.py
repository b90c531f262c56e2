"""DCMTK as the sender: echoscu, storescu (plain, JPEG Lossless, JPEG-LS, mutual TLS).

``/usr/bin/storescu`` is called explicitly: pynetdicom installs console scripts of the same name.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from node_helpers import ECHOSCU, STORESCU, mask_from_seg, wait_until

from ugss.dicom_node.config import Peer
from ugss.runtime.dicom_series import read_dicom_series_with_refs
from ugss.runtime.segment import segment_volume

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        STORESCU is None or ECHOSCU is None, reason="DCMTK not installed (apt-get install dcmtk)"
    ),
]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def test_echoscu_and_called_ae_check(make_node):
    node = make_node(peers=(Peer("DCMTK", "127.0.0.1"),))
    port = str(node.address[1])
    assert _run([ECHOSCU, "-aet", "DCMTK", "-aec", "UGSS", "127.0.0.1", port]).returncode == 0
    wrong = _run([ECHOSCU, "-aet", "DCMTK", "-aec", "OTHER", "127.0.0.1", port])
    assert wrong.returncode != 0 and "Called AE Title Not Recognized" in wrong.stderr + wrong.stdout
    stranger = _run([ECHOSCU, "-aet", "STRANGER", "-aec", "UGSS", "127.0.0.1", port])
    assert stranger.returncode != 0
    assert "Calling AE Title Not Recognized" in stranger.stderr + stranger.stdout


def test_storescu_series_is_processed(make_node, pacs, series34):
    node = make_node(pacs=pacs)
    out = _run(
        [
            STORESCU,
            "-aet",
            "DCMTK",
            "-aec",
            "UGSS",
            "127.0.0.1",
            str(node.address[1]),
            *map(str, series34),
        ]
    )
    assert out.returncode == 0, out.stderr
    assert node.stats.stored == 34
    assert len(pacs.wait_for(2)) == 2


@pytest.mark.parametrize(
    ("tool", "args", "propose"),
    [("dcmcjpeg", [], "-xs"), ("dcmcjpls", [], "-xt"), ("pydicom", [], "-xv")],
    ids=["jpeg-lossless", "jpeg-ls", "jpeg2000-lossless"],
)
def test_compressed_transfer_syntaxes_decode_losslessly(
    make_node, pacs, series34, engine, tmp_path, tool, args, propose
):
    folder = tmp_path / tool
    folder.mkdir()
    if tool == "pydicom":  # DCMTK has no JPEG 2000 encoder; OpenJPEG through pydicom does
        for p in series34:
            ds = pydicom.dcmread(p)
            ds.compress(pydicom.uid.JPEG2000Lossless, generate_instance_uid=False)
            ds.save_as(folder / p.name, enforce_file_format=True)
    else:
        exe = shutil.which(tool)
        if exe is None:
            pytest.skip(f"{tool} not installed (dcmtk)")
        for p in series34:
            assert _run([exe, *args, str(p), str(folder / p.name)]).returncode == 0
    ts = pydicom.dcmread(
        folder / series34[0].name, stop_before_pixels=True
    ).file_meta.TransferSyntaxUID
    assert ts.is_compressed
    node = make_node(pacs=pacs)
    out = _run(
        [
            STORESCU,
            propose,
            "-aet",
            "DCMTK",
            "-aec",
            "UGSS",
            "127.0.0.1",
            str(node.address[1]),
            "+sd",
            str(folder),
        ]
    )
    assert out.returncode == 0, out.stderr
    assert node.stats.stored == 34
    stored = next((node.config.spool / "series").rglob("*.dcm"))
    assert pydicom.dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == ts
    got = pacs.wait_for(2)
    seg = next(d for d in got if d.Modality == "SEG")
    seg_path = tmp_path / "seg.dcm"
    seg.save_as(seg_path, enforce_file_format=True)
    # lossless: the same HU, so the same mask as from the uncompressed series
    v_plain, info = read_dicom_series_with_refs(series34[0].parent)
    v_comp, _ = read_dicom_series_with_refs(folder)
    assert np.array_equal(v_plain.hu, v_comp.hu)
    expected = info.frames(segment_volume(v_plain, engine).mask)
    assert expected.any()
    assert np.array_equal(mask_from_seg(seg_path, list(info.sop_instance_uids)), expected)


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    f = {
        k: folder / f"{k}" for k in ("ca.key", "ca.pem", "srv.key", "srv.pem", "cli.key", "cli.pem")
    }

    def run(*a: str) -> None:
        out = _run([openssl, *a])
        assert out.returncode == 0, out.stderr

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=ugss-test-ca",
        "-keyout",
        str(f["ca.key"]),
        "-out",
        str(f["ca.pem"]),
    )
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("srv", "127.0.0.1"), ("cli", "DCMTK")):
        csr = folder / f"{name}.csr"
        run(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            str(f[f"{name}.key"]),
            "-out",
            str(csr),
        )
        run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(f["ca.pem"]),
            "-CAkey",
            str(f["ca.key"]),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(f[f"{name}.pem"]),
        )
    return f


def test_mutual_tls_with_storescu(make_node, series34, tmp_path):
    certs = _certificates(tmp_path)
    node = make_node(
        tls_cert=certs["srv.pem"],
        tls_key=certs["srv.key"],
        tls_ca=certs["ca.pem"],
        quiet_period_s=60,
    )
    port = str(node.address[1])
    base = [STORESCU, "-aet", "DCMTK", "-aec", "UGSS"]
    tls = ["+tls", str(certs["cli.key"]), str(certs["cli.pem"]), "+cf", str(certs["ca.pem"])]
    ok = _run([*base, *tls, "127.0.0.1", port, *map(str, series34[:2])])
    assert ok.returncode == 0, ok.stderr
    assert node.stats.stored == 2
    plain = _run([*base, "127.0.0.1", port, str(series34[2])], timeout=30)
    assert plain.returncode != 0
    anonymous = _run(
        [*base, "+tla", "+cf", str(certs["ca.pem"]), "127.0.0.1", port, str(series34[3])],
        timeout=30,
    )
    assert anonymous.returncode != 0  # no client certificate
    assert node.stats.stored == 2
    assert wait_until(lambda: ECHOSCU is not None)
