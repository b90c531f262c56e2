"""deploy/systemd: the node's unit has the keys operations rely on, and systemd accepts it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UNIT = ROOT / "deploy" / "systemd" / "ugss-node.service"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_service_keys():
    unit = parse_unit(UNIT.read_text())
    svc = unit["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Restart"] == "on-failure"
    assert one["User"] == "ugss-node" and one["User"] != "root"
    assert one["StateDirectory"] == "ugss-node"
    assert one["ReadWritePaths"] == "/var/lib/ugss-node"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "RestrictSUIDSGID": "yes",
    }.items():
        assert one[key] == value, key
    assert "AF_INET" in one["RestrictAddressFamilies"].split()
    # measured resource caps (issue 14): 3 GiB covers the node's 1.36 GiB peak plus the decoder
    assert one["MemoryMax"] == "3G" and int(one["TasksMax"]) >= 64
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    # ExecStart names an existing console script; its spool is the StateDirectory
    exe, *args = one["ExecStart"].split()
    assert Path(exe).name in SCRIPTS and Path(exe).name == "ugss-node"
    assert args[args.index("--spool") + 1] == "/var/lib/ugss-node"
    assert args[args.index("--config") + 1] == "/etc/ugss-node/ugss-node.toml"
    # the user the unit runs as is created by the sysusers file next to it
    sysusers = (UNIT.parent / "ugss-node.sysusers.conf").read_text()
    assert any(line.split()[:2] == ["u", "ugss-node"] for line in sysusers.splitlines())


@pytest.mark.integration
def test_exec_start_flags_are_accepted_by_the_node(tmp_path):
    """The node parses ExecStart's flags with the Orthanc example config (as the header says)."""
    one = {k: v[-1] for k, v in parse_unit(UNIT.read_text())["Service"].items()}
    _, *args = one["ExecStart"].split()
    args[args.index("--config") + 1] = str(ROOT / "deploy" / "orthanc" / "ugss-node.toml")
    args[args.index("--spool") + 1] = str(tmp_path / "spool")
    run = subprocess.run(
        [sys.executable, "-m", "ugss.dicom_node.cli", *args, "--print-config"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert str(tmp_path / "spool") in run.stdout


@pytest.mark.integration
def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not available")
    exe = Path(sys.executable).parent / "ugss-node"
    if not exe.exists():
        pytest.skip("ugss-node console script not installed next to this Python")
    text = UNIT.read_text().replace("/opt/ugss/bin/ugss-node", str(exe))
    (tmp_path / "ugss-node.service").write_text(text)
    run = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "ugss-node.service")],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if run.returncode != 0 and "Failed to " in run.stderr and "ugss-node" not in run.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr
