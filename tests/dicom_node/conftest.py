"""Fixtures for the DICOM node: a tiny real ONNX model, phantom series, nodes and a fake PACS."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from node_helpers import CollectingSCP, tiny_model, write_series

from ugss.dicom_node.config import Destination, NodeConfig
from ugss.dicom_node.node import Node
from ugss.runtime.engines import Engine, open_engine


@pytest.fixture(scope="session")
def model_path(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny-mc.onnx")


@pytest.fixture(scope="session")
def engine(model_path) -> Engine:
    return open_engine(model_path, provider="cpu", threads=1)


@pytest.fixture(scope="session")
def series34(tmp_path_factory) -> list[Path]:
    """34-slice phantom series (the issue's turnaround size), written once per session."""
    return write_series(tmp_path_factory.mktemp("ct") / "ct34", slices=34, entropy="s34")


@pytest.fixture
def pacs() -> Iterator[CollectingSCP]:
    scp = CollectingSCP()
    scp.port = scp.start()
    yield scp
    scp.stop()


@pytest.fixture
def make_node(tmp_path, model_path, engine, pacs) -> Iterator[Callable[..., Node]]:
    """Start nodes on free ports with a short quiet period; stopped at teardown.

    It asks for ``pacs`` so that the fake PACS is set up first and stopped last: a PACS that
    goes away in the middle of a delivery leaves the sender waiting for its network timeout
    (30 s) when the node stops."""
    nodes: list[Node] = []

    def make(*, pacs: CollectingSCP | None = None, spool: Path | None = None, **kw) -> Node:
        if pacs is not None:
            kw.setdefault("destinations", (Destination("pacs", "PACS", "127.0.0.1", pacs.port),))
        kw.setdefault("quiet_period_s", 0.5)
        kw.setdefault("retry_base_s", 0.2)
        cfg = NodeConfig(
            port=kw.pop("port", 0),
            spool=spool or tmp_path / f"spool{len(nodes)}",
            model=model_path,
            poll_s=0.05,
            **kw,
        )
        node = Node(cfg, engine=engine).start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()
