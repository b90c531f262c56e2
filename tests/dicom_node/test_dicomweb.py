"""DICOMweb delivery (STOW-RS) to a real Orthanc with its DICOMweb plugin (orthanc-dicomweb)."""

from __future__ import annotations

import time

import pytest
from node_helpers import (
    DICOMWEB_PLUGIN,
    ORTHANC,
    Orthanc,
    send_files,
    wait_until,
    write_series,
)

from ugss.dicom_node.config import Destination

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        ORTHANC is None or DICOMWEB_PLUGIN is None,
        reason="Orthanc with DICOMweb not installed (apt-get install orthanc orthanc-dicomweb)",
    ),
]

USERS = {"ugss": "s3cret-pw"}


def _web(name: str, orthanc: Orthanc, path: str = "/dicom-web", scheme: str = "http"):
    return Destination(name, url=f"{scheme}://127.0.0.1:{orthanc.http_port}{path}")


def _secret(tmp_path, text: str):
    path = tmp_path / f"secret-{len(text)}"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    return [write_series(root / f"s{i}", slices=12, size=96, entropy=f"web{i}") for i in range(20)]


def test_twenty_studies_across_an_orthanc_restart_none_lost_none_twice(
    tmp_path, make_node, studies
):
    orthanc = Orthanc(tmp_path / "orthanc").start(dicomweb=True, users=USERS)
    try:
        node = make_node(
            destinations=(_web("web", orthanc),), web_auth="basic", web_user="ugss",
            web_secret_file=_secret(tmp_path, USERS["ugss"]), retry_base_s=0.2,
            retry_max_s=1.0, max_attempts=100,
        )  # fmt: skip
        port = node.address[1]
        for files in studies[:10]:
            assert send_files(port, files) == [0] * len(files)
        assert wait_until(lambda: node.db.counts("outbox").get("sent", 0) >= 4, timeout=60)
        orthanc.stop()  # SIGKILL, with deliveries pending
        for files in studies[10:]:
            assert send_files(port, files) == [0] * len(files)
        time.sleep(2.0)
        orthanc.start(dicomweb=True, users=USERS)  # same ports, same storage
        assert wait_until(lambda: node.db.counts("outbox") == {"sent": 40}, timeout=240), (
            node.db.counts("outbox"),
            node.db.counts("jobs"),
        )
        retried = sum(1 for o in node.db.rows("outbox", 100) if o["attempts"] > 1)
        stored = orthanc.get("/instances")
        srs = orthanc.find_series(Modality="SR")
        segs = orthanc.find_series(Modality="SEG")
        print(f"40 results sent, {retried} after retries; Orthanc holds {len(stored)} instances")
        assert len(stored) == 40  # 0 lost, 0 duplicated
        assert len(srs) == 20 and len(segs) == 20
        assert all(len(s["Instances"]) == 1 for s in srs + segs)
        assert retried > 0  # the restart was really in the middle
    finally:
        orthanc.stop()


def test_http_errors_and_tls_failures_end_in_failed_or_retried_items(tmp_path, make_node, studies):
    orthanc = Orthanc(tmp_path / "orthanc").start(dicomweb=True, users=USERS)
    try:
        good = _secret(tmp_path, USERS["ugss"])
        node = make_node(
            destinations=(
                _web("nowhere", orthanc, "/not-dicom-web"),
                _web("tls", orthanc, scheme="https"),
            ),
            web_auth="basic", web_user="ugss", web_secret_file=good, max_attempts=3,
            retry_base_s=0.1, retry_max_s=0.2,
        )  # fmt: skip
        wrong = make_node(
            destinations=(_web("web", orthanc),), web_auth="basic", web_user="ugss",
            web_secret_file=_secret(tmp_path, "wrong-password"), max_attempts=3,
        )  # fmt: skip
        for n in (node, wrong):
            assert send_files(n.address[1], studies[0]) == [0] * 12
        assert wait_until(lambda: node.db.counts("outbox") == {"failed": 4}, timeout=60)
        assert wait_until(lambda: wrong.db.counts("outbox") == {"failed": 2}, timeout=60)
        rows = {(o["destination"], o["sop_instance_uid"]): o for o in node.db.rows("outbox")}
        for (dest, _), o in rows.items():
            if dest == "nowhere":
                assert o["error"].startswith("HTTP 404") and o["attempts"] == 1
            else:
                assert o["attempts"] == 3, o  # retried, then failed
                assert o["error"].startswith(("TLS:", "ConnectionError")), o
        for o in wrong.db.rows("outbox"):
            assert o["error"].startswith("HTTP 401") and o["attempts"] == 1
        assert orthanc.get("/instances") == []
        assert orthanc.get("/system")  # a TLS handshake on its plain port did not break it
    finally:
        orthanc.stop()
