"""Load, scaled for CI: several senders at once (DCMTK storescu processes and pynetdicom
clients), one association carrying two interleaved series, one series split over two
associations. Every instance is stored exactly once and every series answered exactly once.

The full-size version (8 senders x 300 instances) is ``benchmarks/bench_node_load.py``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from node_helpers import STORESCU, send_files, wait_until, write_series

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(STORESCU is None, reason="DCMTK not installed (apt-get install dcmtk)"),
]

SLICES, SIZE = 20, 64
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def many_series(tmp_path_factory) -> list[list[Path]]:
    root = tmp_path_factory.mktemp("load")
    return [
        write_series(root / f"s{i}", slices=SLICES, size=SIZE, entropy=f"load-{i}")
        for i in range(9)
    ]


def _series_uid(files: list[Path]) -> str:
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)


def test_concurrent_senders_store_once_and_answer_once(make_node, pacs, many_series):
    node = make_node(
        pacs=pacs, quiet_period_s=1.5, max_associations=12, max_associations_per_peer=12
    )
    port = node.address[1]
    dcmtk, pynet = many_series[0:3], many_series[3:6]
    mixed_a, mixed_b, split = many_series[6], many_series[7], many_series[8]
    interleaved = [f for pair in zip(mixed_a, mixed_b, strict=True) for f in pair]
    statuses: dict[str, list[int]] = {}

    def py_send(name: str, files: list[Path]) -> None:
        statuses[name] = send_files(port, files, calling=f"PY{name[-1]}")

    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [STORESCU, "-aet", f"DCMTK{i}", "-aec", "UGSS", "127.0.0.1", str(port)]
            + [str(f) for f in files],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i, files in enumerate(dcmtk)
    ]
    jobs = {f"py{i}": files for i, files in enumerate(pynet)}
    jobs["mix"] = interleaved
    jobs["split0"], jobs["split1"] = split[: SLICES // 2], split[SLICES // 2 :]
    threads = [threading.Thread(target=py_send, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    received_s = time.monotonic() - t0
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    for name, files in jobs.items():
        assert statuses.get(name) == [0] * len(files), name

    n_series, n_sent = len(many_series), len(many_series) * SLICES
    done = wait_until(lambda: node.db.counts("jobs").get("done", 0) >= n_series, timeout=120)
    turnaround_s = time.monotonic() - t0
    assert done, node.db.counts("jobs")
    pacs.wait_for(2 * n_series, timeout=60)
    time.sleep(0.5)  # nothing more arrives
    spooled = list((node.config.spool / "series").glob("*/*.dcm"))
    print(
        f"\nload: {n_sent} sent, {node.stats.stored} stored, {n_sent - len(spooled)} lost; "
        f"{n_sent / received_s:.0f} inst/s received in {received_s:.2f} s; "
        f"all {n_series} series answered {turnaround_s:.2f} s after the first byte"
    )
    assert node.stats.stored == n_sent and node.stats.duplicates == 0
    assert len(spooled) == n_sent
    rows = node.db.rows("series", limit=100)
    expected = {_series_uid(s) for s in many_series}
    assert {r["series_uid"] for r in rows} == expected
    assert all(r["n_instances"] == SLICES for r in rows)
    jobs_rows = node.db.rows("jobs", limit=100)
    assert Counter(j["series_uid"] for j in jobs_rows) == dict.fromkeys(expected, 1)
    assert {j["state"] for j in jobs_rows} == {"done"}
    assert len(pacs.received) == 2 * n_series  # exactly one SEG and one SR per series
    segs = [ds for ds in pacs.received if str(ds.SOPClassUID) == SEG_CLASS]
    referenced = Counter(str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID) for ds in segs)
    assert referenced == dict.fromkeys(expected, 1)
