"""The Orthanc walkthrough in one command, from the repository, without root or fixed ports.

    python deploy/orthanc/walkthrough.py            # stays up; Ctrl-C stops Orthanc and the node
    python deploy/orthanc/walkthrough.py --exit     # stops once the results are back (the test)

What it does, step by step as the README describes it:

1. picks free ports and writes ``orthanc.json`` and ``ugss-node.toml`` under ``--work`` (default
   ``ugss-walkthrough/``), made from this folder's examples with local folders and those ports;
2. starts Orthanc and ``ugss-node`` (the bundled model) as child processes;
3. writes a synthetic head CT with a hemorrhage as a DICOM series and uploads it to Orthanc's
   REST API (``POST /instances``), as you would a real CT — or use DCMTK:
   ``/usr/bin/storescu -aet ORTHANC -aec ORTHANC 127.0.0.1 <dicom-port> +sd ct/``;
4. asks Orthanc to send the study to the node (``POST /modalities/ugss/store``);
5. waits until the DICOM-SEG and the SR are back in Orthanc and prints what they say.

Needs Orthanc (``apt-get install orthanc``) and the package installed (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_configs(work: Path) -> dict[str, int]:
    """orthanc.json and ugss-node.toml under ``work`` on free ports; returns the ports."""
    ports = {"http": free_port(), "dicom": free_port(), "node": free_port()}
    orthanc = json.loads((HERE / "orthanc.json").read_text())
    orthanc.update(
        StorageDirectory=str(work / "orthanc-db"), IndexDirectory=str(work / "orthanc-db"),
        HttpPort=ports["http"], DicomPort=ports["dicom"], StableAge=2,
        DicomModalities={"ugss": ["UGSS", "127.0.0.1", ports["node"]]},
    )  # fmt: skip
    (work / "orthanc.json").write_text(json.dumps(orthanc, indent=2) + "\n")
    node = [
        'ae_title = "UGSS"', 'bind = "127.0.0.1"', f"port = {ports['node']}",
        f'peers = ["{orthanc["DicomAet"]}@127.0.0.1"]',
        f'destinations = ["orthanc={orthanc["DicomAet"]}@127.0.0.1:{ports["dicom"]}"]',
        f'spool = "{work / "spool"}"', "quiet_period_s = 3",
    ]  # fmt: skip
    (work / "ugss-node.toml").write_text("\n".join(node) + "\n")
    return ports


def rest(port: int, path: str, body: bytes | dict | None = None, *, raw: bool = False):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    with urllib.request.urlopen(req, timeout=120) as rsp:
        content = rsp.read()
    return content if raw else json.loads(content or b"null")


def wait_for(what: str, check, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"walkthrough: {what} did not happen within {timeout:g} s")


def write_ct(folder: Path) -> list[Path]:
    """A synthetic head CT (5 mm slices, 256², a 15 mL subdural) as a DICOM series."""
    from ugss.runtime.dicom_write import write_dicom_series
    from ugss.synth.scan import make_case

    case = make_case(11, matrix=256, hemorrhage="subdural", hemorrhage_ml=15.0, thin=False)
    n, true_ml = case.volume.shape[0], case.truth.volume_ml
    print(f"synthetic CT: {n} slices, true hemorrhage {true_ml:.1f} mL")
    return write_dicom_series(case.volume, folder, uid_entropy="ugss-walkthrough")


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 (lives as long as the process)
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def run(work: Path, stay: bool, orthanc_bin: str) -> int:
    ports = write_configs(work)
    procs = [start([orthanc_bin, str(work / "orthanc.json")], work / "orthanc.log")]
    wait_for("Orthanc start", lambda: rest(ports["http"], "/system"), 30)
    config = work / "ugss-node.toml"
    node_cmd = [sys.executable, "-m", "ugss.dicom_node.cli", "--config", str(config)]
    procs.append(start(node_cmd, work / "ugss-node.log"))

    def node_up() -> bool:
        socket.create_connection(("127.0.0.1", ports["node"]), 1).close()
        return True

    try:
        wait_for("ugss-node start", node_up, 60)
        for path in write_ct(work / "ct"):
            rest(ports["http"], "/instances", path.read_bytes())
        (study,) = rest(ports["http"], "/studies")
        print(f"uploaded to Orthanc (http://127.0.0.1:{ports['http']}), study {study}")
        rest(ports["http"], "/modalities/ugss/store", {"Resources": [study], "Synchronous": True})
        print("Orthanc sent the study to ugss-node; waiting for the results ...")
        t0 = time.time()
        wait_for("SEG + SR back in Orthanc", lambda: _results(ports["http"]) is not None, 180)
        seg, sr = _results(ports["http"])
        print(f"back in Orthanc after {time.time() - t0:.1f} s: {seg[0]!r} and {sr[0]!r}")
        print(_volume_line(rest(ports["http"], f"/instances/{sr[1]}/file", raw=True)))
        print(f"status: ugss-node status --config {config}")
        if stay:
            print("Orthanc and ugss-node keep running; Ctrl-C stops both.")
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)


def _results(http_port: int) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """((description, instance id) of the SEG, of the SR) when both are in Orthanc, else None."""
    found = {}
    for series_id in rest(http_port, "/series"):
        series = rest(http_port, f"/series/{series_id}")
        tags = series["MainDicomTags"]
        if tags.get("Modality") in ("SEG", "SR") and series["Instances"]:
            found[tags["Modality"]] = (tags.get("SeriesDescription", ""), series["Instances"][0])
    return (found["SEG"], found["SR"]) if len(found) == 2 else None


def _volume_line(sr_bytes: bytes) -> str:
    import io

    import pydicom

    from ugss.dicom_node.sr import read_volume_ml

    value, low, high = read_volume_ml(pydicom.dcmread(io.BytesIO(sr_bytes)))
    return f"the SR says: hemorrhage {value:.1f} mL (interval {low:.1f}-{high:.1f} mL)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("ugss-walkthrough"), help="state folder")
    ap.add_argument("--exit", action="store_true", help="stop once the results are back")
    args = ap.parse_args()
    orthanc_bin = shutil.which("Orthanc")
    if orthanc_bin is None:
        sys.exit("walkthrough: Orthanc is not installed (apt-get install orthanc)")
    work = args.work.resolve()
    if work.exists() and any(work.iterdir()):
        sys.exit(f"walkthrough: {work} is not empty (remove it or pass --work)")
    work.mkdir(parents=True, exist_ok=True)
    return run(work, not args.exit, orthanc_bin)


if __name__ == "__main__":
    sys.exit(main())
