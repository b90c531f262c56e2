"""deploy/compose: the compose file, the node's TOML and Orthanc's JSON describe each other."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path

import pytest

from ugss.dicom_node.config import Peer, load_config

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "compose"


def _scalar(text: str):
    text = text.strip()
    if text[:1] in "\"'" and text[-1:] == text[:1]:
        return text[1:-1]
    if text.startswith("["):
        return json.loads(text)
    return text


_KEY = re.compile(r"^([^\s'\"\[][^:]*):(?:\s+|$)")


def mini_yaml(text: str) -> dict:
    """Block-style YAML subset (maps, lists of scalars, quoted or flow-list scalars, comments).

    Enough for docker-compose.yml as written; PyYAML, when installed, cross-checks it.
    """
    lines = []
    for raw in text.splitlines():
        stripped = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip()), stripped.strip()))

    def block(i: int, indent: int):
        if lines[i][1].startswith("- "):
            items = []
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                body = lines[i][1][2:]
                if _KEY.match(body):
                    # a list item that is a map: re-read it at the item's content indent
                    lines[i] = (indent + 2, body)
                    value, i = block(i, indent + 2)
                    items.append(value)
                else:
                    items.append(_scalar(body))
                    i += 1
            return items, i
        out = {}
        while i < len(lines) and lines[i][0] == indent:
            m = _KEY.match(lines[i][1])
            assert m, f"not a mapping line: {lines[i][1]!r}"
            key, rest = m.group(1), lines[i][1][m.end() :]
            i += 1
            if rest.strip():
                out[key.strip()] = _scalar(rest)
            elif i < len(lines) and lines[i][0] > indent:
                out[key.strip()], i = block(i, lines[i][0])
            else:
                out[key.strip()] = None
        return out, i

    doc, end = block(0, 0)
    assert end == len(lines), f"unparsed from line {lines[end]}"
    return doc


@pytest.fixture(scope="module")
def compose() -> dict:
    text = (COMPOSE / "docker-compose.yml").read_text()
    doc = mini_yaml(text)
    try:
        import yaml
    except ImportError:
        return doc
    assert yaml.safe_load(text) == doc
    return doc


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
