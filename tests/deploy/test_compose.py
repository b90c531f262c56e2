"""deploy/compose: the compose file, the node's TOML and Orthanc's JSON describe each other."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import pytest
from deploy_helpers import load_yaml, mini_yaml

from ugss.dicom_node.config import Peer, load_config

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "compose"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE / "docker-compose.yml")


def test_node_and_orthanc_configs_describe_each_other(compose):
    cfg = load_config(COMPOSE / "ugss-node.toml")
    orthanc = json.loads((COMPOSE / "orthanc.json").read_text())
    services = compose["services"]
    ip = {name: s["networks"]["dicom"]["ipv4_address"] for name, s in services.items()}
    subnet = ipaddress.ip_network(compose["networks"]["dicom"]["ipam"]["config"][0]["subnet"])
    assert all(ipaddress.ip_address(a) in subnet for a in ip.values())
    # Orthanc's modality entry is the node's container, AE title and port
    aet, host, port = orthanc["DicomModalities"]["ugss"]
    assert (aet, host, port) == (cfg.ae_title, ip["ugss-node"], cfg.port)
    assert cfg.bind == "0.0.0.0"
    # the node accepts Orthanc from its container address (and its own health check)
    assert Peer(orthanc["DicomAet"], ip["orthanc"]) in cfg.peers
    assert Peer("HEALTHCHECK", "127.0.0.1") in cfg.peers and len(cfg.peers) == 2
    # results go back to Orthanc's DICOM port
    (dest,) = cfg.destinations
    assert (dest.ae_title, dest.host, dest.port) == (
        orthanc["DicomAet"],
        ip["orthanc"],
        orthanc["DicomPort"],
    )
    assert orthanc["DicomAlwaysAllowStore"] is False and orthanc["DicomCheckModalityHost"]


def test_mounts_ports_and_image(compose):
    node = compose["services"]["ugss-node"]
    orthanc = compose["services"]["orthanc"]
    assert "./ugss-node.toml:/etc/ugss-node/ugss-node.toml:ro" in node["volumes"]
    assert node["command"] == ["--config", "/etc/ugss-node/ugss-node.toml"]
    assert any(v.endswith(":/var/lib/ugss-node") for v in node["volumes"])
    assert "./orthanc.json:/etc/orthanc/orthanc.json:ro" in orthanc["volumes"]
    # the same measured caps as the systemd unit (issue 14)
    unit = (ROOT / "deploy" / "systemd" / "ugss-node.service").read_text()
    assert node["mem_limit"] == "3g" and "MemoryMax=3G" in unit
    assert f"TasksMax={node['pids_limit']}" in unit
    # every bind-mounted host path exists next to the compose file
    for service in (node, orthanc):
        for v in service["volumes"]:
            if v.startswith("./"):
                assert (COMPOSE / v.split(":")[0]).is_file(), v
    build = node["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve().is_file()
    # Orthanc's HTTP API is published on the host's loopback only, and needs a password
    assert orthanc["ports"] == ["127.0.0.1:8042:8042"]
    conf = json.loads((COMPOSE / "orthanc.json").read_text())
    assert conf["AuthenticationEnabled"] is True and conf["RegisteredUsers"]
    assert set(compose["volumes"]) == {"orthanc-db", "ugss-spool"}
    assert tomllib.loads((COMPOSE / "ugss-node.toml").read_text())["spool"] == "/var/lib/ugss-node"


def test_mini_yaml_reads_nested_lists_of_maps():
    doc = mini_yaml('a:\n  b:\n    - c: 1\n      d: \'x\'\n  e: ["p", "q"]  # note\n')
    assert doc == {"a": {"b": [{"c": "1", "d": "x"}], "e": ["p", "q"]}}
