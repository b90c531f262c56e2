"""``ugss-node`` speed: receive throughput, turnaround to SEG + SR in a PACS, peak memory.

    python benchmarks/bench_node.py                 # 300-slice 512² receive, 34-slice turnaround
    python benchmarks/bench_node.py --tiny --json out.json    # CI smoke: small series, seconds
    python benchmarks/bench_node.py --memory        # + peak RSS of the node on a 300-slice series

- receive: DCMTK ``/usr/bin/storescu`` sends a series over loopback, one association, to
  (a) the node (validated, fsynced, recorded in SQLite before each answer) and (b) DCMTK's own
  ``storescp`` writing to disk, as a reference; instances/s and the ratio node/storescp.
  Also a node with its Prometheus endpoint on, scraped at 2 Hz during the transfer. Each node
  run starts with an empty spool (a resend of held instances is only a duplicate).
- turnaround: Orthanc pushes a 34-slice series to the node (``/modalities/<id>/store``); time
  from the node's last received instance to SEG and SR stored in Orthanc, split into wait
  (the quiet period), load, model, encode and send. Without Orthanc, storescu sends and a
  pynetdicom SCP stands in for the PACS.
- memory: the node as its own process (CLI) on a 300-slice series; peak RSS (VmHWM).

The model is a ResUNet of the paper's shape with random weights (real cost, no torch; input
160, T = 8 MC samples as exported by default), built with the tests' ONNX helper; ``--tiny``
uses the tests' tiny threshold model. Medians of ``--repeats`` runs; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))  # onnx_models
sys.path.insert(0, str(ROOT / "tests" / "dicom_node"))  # node_helpers

STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"


def make_series(out: Path, slices: int, matrix: int, seed: int = 3) -> list[Path]:
    """A synthetic head CT with a hemorrhage, written as one DICOM CT series."""
    import numpy as np

    from ugss.runtime.dicom_series import write_dicom_series
    from ugss.runtime.volume import Volume

    try:
        from ugss.synth.scan import make_scan

        volume, _, _ = make_scan(
            seed, matrix=matrix, hemorrhage="subdural", thin=False, slice_thickness=4.5
        )
        hu = volume.hu
        reps = slices // hu.shape[0] + 1
        hu = np.concatenate([hu] * reps)[:slices] if hu.shape[0] < slices else hu[:slices]
        aff = volume.affine.copy()
        volume = Volume(hu=np.ascontiguousarray(hu), affine=aff)
    except ImportError:
        import onnx_models as om

        hu, _ = om.phantom_hu((slices, matrix, matrix))
        volume = Volume(hu=hu, affine=om.phantom_affine((5.0, 230 / matrix, 230 / matrix)))
    return write_dicom_series(volume, out, patient_id="BENCH", uid_entropy=f"{slices}-{matrix}")


def build_model(out: Path, tiny: bool, input_size: int = 160) -> Path:
    import onnx_models as om

    from ugss.runtime.model_info import ModelInfo

    if tiny:
        return om.save(om.build_mc_model(om.mc_info(64, 6)), out / "tiny.onnx")
    info = ModelInfo(
        kind="mc",
        input_size=input_size,
        mc_samples=8,
        dropout_rate=0.2,
        dropout_at="head",
        name="resunet-random-weights",
    )
    return om.save(om.build_resunet(info), out / "resunet.onnx")


def start_node(
    work: Path,
    model: Path,
    *,
    port: int,
    quiet: float,
    dests: list[str],
    peers: list[str] | None = None,
    metrics_port: int | None = None,
) -> subprocess.Popen:
    cfg = work / "node.toml"
    lines = [f"metrics_port = {metrics_port}"] if metrics_port is not None else []
    lines += [
        f"port = {port}",
        f'spool = "{work / "spool"}"',
        f'model = "{model}"',
        f"quiet_period_s = {quiet}",
        f"destinations = {json.dumps(dests)}",
        f"peers = {json.dumps(peers or [])}",
        "retry_base_s = 0.5",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    log = open(work / "node.log", "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ugss.dicom_node.cli", "--config", str(cfg)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from node_helpers import echo, wait_until

    if not wait_until(lambda: proc.poll() is not None or echo(port) == 0, timeout=60, step=0.2):
        raise RuntimeError("node did not start")
    if proc.poll() is not None:
        raise RuntimeError((work / "node.log").read_text())
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def storescu(port: int, folder: Path, called: str, nodelay: bool = False) -> float:
    """DCMTK storescu, one association; ``nodelay``: TCP_NODELAY=1 (Debian's build keeps Nagle)."""
    env = {**os.environ, "TCP_NODELAY": "1" if nodelay else "0"}
    t0 = time.perf_counter()
    subprocess.run(
        [STORESCU, "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port), "+sd", str(folder)],
        check=True,
        capture_output=True,
        env=env,
    )
    return time.perf_counter() - t0


def _storescp_seconds(work: Path, folder: Path, nodelay: bool) -> float:
    from node_helpers import free_port

    port = free_port()
    out = Path(tempfile.mkdtemp(dir=work, prefix="scp"))
    env = {**os.environ, "TCP_NODELAY": "1" if nodelay else "0"}
    scp = subprocess.Popen([STORESCP, "-aet", "REF", "-od", str(out), str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.5)
    try:
        return storescu(port, folder, "REF", nodelay)
    finally:
        scp.terminate()
        scp.wait()
        shutil.rmtree(out, ignore_errors=True)


def bench_receive(work: Path, model: Path, series: list[Path], repeats: int) -> dict:
    """Seconds per series into a fresh node and into DCMTK's storescp, Nagle on (DCMTK's default
    on Debian) and off (TCP_NODELAY=1 for the DCMTK tools), and into a node with its metrics
    endpoint on. Every node run starts empty: a resend of held instances is only a duplicate."""
    folder = series[0].parent
    n = len(series)
    mb = sum(p.stat().st_size for p in series) / 1e6
    times: dict[str, list[float]] = {}
    runs = {"node": (False, False), "node_nodelay": (True, False), "node_metrics": (True, True)}
    for r in range(repeats):
        for name, (nodelay, metrics) in runs.items():
            seconds = _receive_once(work / f"{name}{r}", model, folder, nodelay, metrics)
            times.setdefault(name, []).append(seconds)
        if os.path.exists(STORESCP):
            times.setdefault("storescp", []).append(_storescp_seconds(work, folder, False))
            times.setdefault("storescp_nodelay", []).append(_storescp_seconds(work, folder, True))
    res: dict = {"instances": n, "megabytes": round(mb, 1), "receivers": {}}
    for name, values in times.items():
        sec = statistics.median(values)
        res["receivers"][name] = {"seconds": round(sec, 3), "instances_per_s": round(n / sec, 1)}
    return res


def _receive_once(work: Path, model: Path, folder: Path, nodelay: bool, metrics: bool) -> float:
    """storescu into a fresh node; with ``metrics`` its endpoint is on and scraped at 2 Hz."""
    import threading
    import urllib.request

    from node_helpers import free_port

    work.mkdir()
    port, mport = free_port(), free_port() if metrics else None
    proc = start_node(work, model, port=port, quiet=3600, dests=[], metrics_port=mport)
    done, scrapes = threading.Event(), []

    def scrape() -> None:
        while not done.wait(0.5):
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10) as rsp:
                scrapes.append(len(rsp.read()))

    thread = threading.Thread(target=scrape, daemon=True)
    if metrics:
        thread.start()
    try:
        return storescu(port, folder, "UGSS", nodelay)
    finally:
        done.set()
        if metrics:
            thread.join()
        stop(proc)
        if metrics and not scrapes:
            raise RuntimeError("the metrics endpoint was never scraped")


def _job_timings(db: Path) -> dict:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        job = conn.execute("SELECT * FROM jobs WHERE state='done' ORDER BY id DESC").fetchone()
        last = conn.execute(
            "SELECT last_at FROM series WHERE series_uid=?", (job["series_uid"],)
        ).fetchone()[0]
        sent = conn.execute(
            "SELECT MAX(sent_at), COUNT(*) FROM outbox WHERE job_id=? AND state='sent'",
            (job["id"],),
        ).fetchone()
    t = json.loads(job["result"])["timings_s"]
    t["send"] = round(sent[0] - job["finished_at"], 3)
    t["turnaround"] = round(sent[0] - last, 3)
    return t


def bench_turnaround(
    work: Path, model: Path, series: list[Path], quiet: float, repeats: int
) -> dict:
    from node_helpers import ORTHANC, CollectingSCP, Orthanc, free_port, wait_until

    runs = []
    peer = "orthanc" if ORTHANC else "pynetdicom SCP (no Orthanc)"
    for r in range(repeats):
        wdir = work / f"turn{r}"
        wdir.mkdir()
        port = free_port()
        if ORTHANC:
            pacs = Orthanc(wdir / "orthanc").start(modalities={"ugss": ["UGSS", "127.0.0.1", port]})
            dest = f"pacs=ORTHANC@127.0.0.1:{pacs.dicom_port}"
        else:
            pacs = CollectingSCP()
            dest = f"pacs=PACS@127.0.0.1:{pacs.start()}"
        proc = start_node(wdir, model, port=port, quiet=quiet, dests=[dest])
        try:
            if ORTHANC:
                import pydicom

                pacs.upload(series)
                uid = str(pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID)
                pacs.post(
                    "/modalities/ugss/store",
                    {"Resources": [pacs.series_id(uid)], "Synchronous": True},
                )
                done = wait_until(lambda p=pacs: p.find_series(Modality="SR"), timeout=quiet + 300)
            else:
                storescu(port, series[0].parent, "UGSS")
                done = len(pacs.wait_for(2, timeout=quiet + 300)) == 2
            if not done:
                raise RuntimeError("no result: " + (wdir / "node.log").read_text()[-2000:])
            db = wdir / "spool" / "node.sqlite"
            wait_until(lambda d=db: _sent(d) == 2, timeout=30)
            runs.append(_job_timings(db))
        finally:
            stop(proc)
            pacs.stop()
    keys = ("wait", "load", "model", "encode", "send", "turnaround")
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    return {
        "slices": len(series),
        "quiet_period_s": quiet,
        "pacs": peer,
        "median_s": med,
        "target_s": quiet + 10,
        "runs": runs,
    }


def _sent(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM outbox WHERE state='sent'").fetchone()[0]
    except sqlite3.Error:
        return 0


def bench_memory(work: Path, model: Path, series: list[Path]) -> dict:
    from node_helpers import CollectingSCP, free_port, wait_until

    wdir = work / "memory"
    wdir.mkdir()
    pacs = CollectingSCP()
    dest = f"pacs=PACS@127.0.0.1:{pacs.start()}"
    port = free_port()
    proc = start_node(wdir, model, port=port, quiet=1.0, dests=[dest])
    try:
        t0 = time.perf_counter()
        storescu(port, series[0].parent, "UGSS")
        ok = len(pacs.wait_for(2, timeout=900)) == 2
        seconds = time.perf_counter() - t0
        status = Path(f"/proc/{proc.pid}/status").read_text()
        hwm_kib = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM")))
        wait_until(lambda: True)
    finally:
        stop(proc)
        pacs.stop()
    return {
        "slices": len(series),
        "ok": ok,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(hwm_kib / 2**20, 3),
        "target_gib": 1.5,
    }


def environment() -> dict:
    import highdicom
    import onnxruntime
    import pydicom
    import pynetdicom

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "absent"

    return {
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "pynetdicom": pynetdicom.__version__,
        "highdicom": highdicom.__version__,
        "onnxruntime": onnxruntime.__version__,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "storescu": version([STORESCU, "--version"]),
        "orthanc": version([shutil.which("Orthanc") or "Orthanc", "--version"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CI smoke: small series and tiny model")
    ap.add_argument("--memory", action="store_true", help="also peak RSS on a 300-slice series")
    ap.add_argument("--repeats", type=int, default=None, help="runs per measurement (median)")
    ap.add_argument("--quiet", type=float, default=None, help="quiet period in seconds")
    ap.add_argument("--input-size", type=int, default=160, help="ResUNet input size (model side)")
    ap.add_argument(
        "--only",
        choices=("receive", "turnaround", "memory"),
        action="append",
        help="run only these parts (repeatable)",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    if not os.path.exists(STORESCU):
        sys.exit("DCMTK's /usr/bin/storescu is needed (apt-get install dcmtk)")
    repeats = args.repeats or (1 if args.tiny else 3)
    quiet = args.quiet if args.quiet is not None else (1.0 if args.tiny else 5.0)
    matrix, recv_slices = (128, 60) if args.tiny else (512, 300)
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        model = build_model(work, args.tiny, args.input_size)
        big = make_series(work / "big", recv_slices, matrix)
        small = make_series(work / "small", 34, matrix, seed=4)
        result = {
            "environment": environment(),
            "tiny": args.tiny,
            "model": model.name,
            "input_size": 64 if args.tiny else args.input_size,
        }
        parts = set(args.only or ["receive", "turnaround"] + (["memory"] if args.memory else []))
        if "receive" in parts:
            result["receive"] = bench_receive(work, model, big, repeats)
        if "turnaround" in parts:
            result["turnaround"] = bench_turnaround(work, model, small, quiet, repeats)
        if "memory" in parts:
            result["memory"] = bench_memory(work, model, big)
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def print_tables(result: dict) -> None:
    if "receive" in result:
        print_receive(result["receive"])
    if "turnaround" in result:
        print_turnaround(result["turnaround"])
    if "memory" in result:
        m = result["memory"]
        print(
            f"\nmemory ({m['slices']} slices): peak RSS {m['peak_rss_gib']:.2f} GiB "
            f"(target {m['target_gib']} GiB), {m['seconds']} s"
        )


def print_receive(r: dict) -> None:
    print(f"\nreceive ({r['instances']} instances, {r['megabytes']} MB, storescu → loopback)")
    labels = {
        "node": "ugss-node, storescu defaults",
        "node_nodelay": "ugss-node, storescu TCP_NODELAY=1",
        "node_metrics": "ugss-node, TCP_NODELAY=1, metrics 2 Hz",
        "storescp": "DCMTK storescp, defaults",
        "storescp_nodelay": "DCMTK storescp, TCP_NODELAY=1",
    }
    for name, v in r["receivers"].items():
        print(f"  {labels[name]:36} {v['seconds']:7.2f} s  {v['instances_per_s']:7.1f} inst/s")


def print_turnaround(t: dict) -> None:
    print(
        f"\nturnaround ({t['slices']} slices, quiet period {t['quiet_period_s']:g} s, {t['pacs']})"
    )
    for k, v in t["median_s"].items():
        print(f"  {k:11} {v:8.2f} s")
    print(f"  target     {t['target_s']:8.2f} s (quiet period + 10 s)")


if __name__ == "__main__":
    main()
