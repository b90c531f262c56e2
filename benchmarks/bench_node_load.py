"""``ugss-node`` under load: many senders at once; instances sent / stored / lost, rates.

    python benchmarks/bench_node_load.py            # 8 series x 300 instances, 128², + 1 split
    python benchmarks/bench_node_load.py --tiny     # CI smoke: 20 instances of 64² per series

Senders run at the same time, each on its own association: half are DCMTK ``/usr/bin/storescu``
processes, half pynetdicom clients; one pynetdicom association carries two series interleaved
instance by instance, and one more series is split over two associations. The node runs in
this process with the tests' tiny ONNX model (the model's cost is ``bench_node.py``'s subject)
and sends its results to a pynetdicom SCP standing in for the PACS.

Reported: instances sent, stored (node counters and spool files), lost, duplicates; receive
rate (all instances / time until every sender finished); turnaround (first byte to the last
series' SEG + SR delivered); result sets per series (must be exactly 1); the node's peak thread
count (what systemd's ``TasksMax`` limits). Nothing is asserted;
the exit status is 1 when anything was lost or answered more or less than once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))  # onnx_models
sys.path.insert(0, str(ROOT / "tests" / "dicom_node"))  # node_helpers

STORESCU = "/usr/bin/storescu"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


class TaskSampler:
    """Peak number of threads (Linux tasks) of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, len(os.listdir("/proc/self/task")))

    def start(self) -> TaskSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(senders: int, slices: int, matrix: int, quiet_s: float, workdir: Path) -> dict:
    import pydicom
    from node_helpers import CollectingSCP, send_files, tiny_model, wait_until, write_series

    from ugss.dicom_node.config import Destination, NodeConfig
    from ugss.dicom_node.node import Node
    from ugss.runtime.engines import open_engine

    n_dcmtk = senders // 2
    n_py = senders - n_dcmtk - 2  # + one sender of two interleaved series, + one split series
    n_series = n_dcmtk + n_py + 3
    t = time.monotonic()
    series = [
        write_series(workdir / f"s{i}", slices=slices, size=matrix, entropy=f"bench-load-{i}")
        for i in range(n_series)
    ]
    write_s = time.monotonic() - t
    uids = [str(pydicom.dcmread(s[0], stop_before_pixels=True).SeriesInstanceUID) for s in series]
    engine = open_engine(tiny_model(workdir / "tiny.onnx"), provider="cpu", threads=1)
    pacs = CollectingSCP()
    pacs.port = pacs.start()
    cfg = NodeConfig(
        port=0, spool=workdir / "spool", model=workdir / "tiny.onnx", poll_s=0.05,
        quiet_period_s=quiet_s, retry_base_s=0.2, max_associations=senders + 4,
        max_associations_per_peer=senders + 4, max_series_per_hour=100_000,  # all from 127.0.0.1
        spool_limit_mb=100_000, destinations=(Destination("pacs", "PACS", "127.0.0.1", pacs.port),),
    )  # fmt: skip
    node = Node(cfg, engine=engine).start()
    port = node.address[1]
    try:
        dcmtk = series[:n_dcmtk]
        py = series[n_dcmtk : n_dcmtk + n_py]
        a, b, split = series[-3], series[-2], series[-1]
        jobs = {f"py{i}": files for i, files in enumerate(py)}
        jobs["interleaved"] = [f for pair in zip(a, b, strict=True) for f in pair]
        jobs["split0"], jobs["split1"] = split[: slices // 2], split[slices // 2 :]
        statuses: dict[str, list[int]] = {}

        def send(name: str, files: list[Path]) -> None:
            statuses[name] = send_files(port, files, calling="PY")

        tasks = TaskSampler().start()
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [STORESCU, "-aet", "DCMTK", "-aec", "UGSS", "127.0.0.1", str(port)]
                + [str(f) for f in files],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for files in dcmtk
        ]
        threads = [threading.Thread(target=send, args=item) for item in jobs.items()]
        for th in threads:
            th.start()
        for th in threads:
            th.join(1800)
        rcs = [p.wait(1800) for p in procs]
        received_s = time.monotonic() - t0
        wait_until(lambda: node.db.counts("jobs").get("done", 0) >= n_series, timeout=600, step=0.1)
        wait_until(lambda: len(pacs.received) >= 2 * n_series, timeout=120)
        turnaround_s = time.monotonic() - t0
        time.sleep(1.0)  # anything extra would arrive now
        tasks.stop()
        sent = n_series * slices
        acked = sum(slices for rc in rcs if rc == 0) + sum(s.count(0) for s in statuses.values())
        spooled = len(list((cfg.spool / "series").glob("*/*.dcm")))
        segs = [ds for ds in pacs.received if str(ds.SOPClassUID) == SEG_CLASS]
        per_series = Counter(str(ds.ReferencedSeriesSequence[0].SeriesInstanceUID) for ds in segs)
        return {
            "senders": len(procs) + len(threads) - 1,  # the split series counts once
            "associations": len(procs) + len(threads),
            "series": n_series,
            "slices": slices,
            "matrix": matrix,
            "write_series_s": round(write_s, 2),
            "sent": sent,
            "acknowledged": acked,
            "stored": node.stats.stored,
            "spool_files": spooled,
            "lost": sent - spooled,
            "duplicates": node.stats.duplicates,
            "refused": node.stats.refused,
            "receive_s": round(received_s, 2),
            "receive_inst_per_s": round(sent / received_s, 1),
            "turnaround_s": round(turnaround_s, 2),
            "results_received": len(pacs.received),
            "series_answered_once": sum(1 for u in uids if per_series.get(u) == 1),
            "series_answered_more": sum(1 for u in uids if per_series.get(u, 0) > 1),
            # threads of this process at their peak, less the bench's own sender threads and
            # the sampler: what systemd's TasksMax counts for the node
            "peak_node_tasks": tasks.peak - len(threads) - 1,
        }
    finally:
        node.stop()
        pacs.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CI smoke: 20 instances of 64² per series")
    ap.add_argument("--senders", type=int, default=8, help="concurrent senders (>= 4)")
    ap.add_argument("--slices", type=int, default=None, help="instances per series (default 300)")
    ap.add_argument("--matrix", type=int, default=None, help="rows = columns (default 128)")
    ap.add_argument("--quiet", type=float, default=2.0, help="quiet period in seconds")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    slices = args.slices or (20 if args.tiny else 300)
    matrix = args.matrix or (64 if args.tiny else 128)
    with tempfile.TemporaryDirectory(prefix="ugss-bench-load-") as tmp:
        out = run(max(4, args.senders), slices, matrix, args.quiet, Path(tmp))
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    ok = out["lost"] == 0 and out["series_answered_once"] == out["series"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
