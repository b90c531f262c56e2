"""The Prometheus endpoint: scraped over loopback while a real series goes through the node."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from node_helpers import free_port, send_files, wait_until
from prometheus_client.parser import text_string_to_metric_families

from ugss.dicom_node.config import Destination, NodeConfig
from ugss.dicom_node.node import Node
from ugss.errors import ConfigError

pytestmark = pytest.mark.slow  # each test starts a node and waits out its quiet periods


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``(sample name, sorted labels) → value`` from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as rsp:
        text = rsp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_series_end_to_end_shows_in_the_metrics(make_node, pacs, series34):
    down = Destination("down", "DOWN", "127.0.0.1", free_port())  # nothing listens there
    node = make_node(
        destinations=(Destination("pacs", "PACS", "127.0.0.1", pacs.port), down),
        metrics_port=0, max_attempts=2, retry_max_s=0.3,
    )  # fmt: skip
    assert node.metrics_port
    assert send_files(node.address[1], series34) == [0] * 34
    assert send_files(node.address[1], series34[:1]) == [0]  # a repeat
    assert wait_until(lambda: node.db.counts("outbox") == {"sent": 2, "failed": 2}, timeout=60)
    m = scrape(node.metrics_port)
    assert m[("ugss_node_instances_total", (("outcome", "stored"),))] == 34
    assert m[("ugss_node_instances_total", (("outcome", "duplicate"),))] == 1
    assert m[("ugss_node_studies_completed_total", ())] == 1
    assert m[("ugss_node_jobs_finished_total", (("outcome", "segmented"),))] == 1
    assert m[("ugss_node_jobs_finished_total", (("outcome", "failed"),))] == 0

    def deliveries(dest: str, outcome: str) -> float:
        return m[("ugss_node_deliveries_total", (("destination", dest), ("outcome", outcome)))]

    assert deliveries("pacs", "delivered") == 2
    assert deliveries("down", "retrying") == 2 and deliveries("down", "failed") == 2
    assert m[("ugss_node_outbox_items", (("destination", "down"), ("state", "failed")))] == 2
    assert m[("ugss_node_outbox_items", (("destination", "pacs"), ("state", "sent")))] == 2
    assert m[("ugss_node_turnaround_seconds_count", (("destination", "pacs"),))] == 2
    # turnaround counts from the last instance: at least the quiet period
    assert m[("ugss_node_turnaround_seconds_sum", (("destination", "pacs"),))] >= 2 * 0.5
    assert m[("ugss_node_model_seconds_count", ())] == 1
    assert m[("ugss_node_spool_bytes", (("kind", "used"),))] > 34 * 8000
    assert m[("ugss_node_jobs", (("state", "done"),))] == 1


def test_metrics_are_off_by_default_and_a_taken_port_is_one_error(make_node, tmp_path, engine):
    assert make_node().metrics_port is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cfg = NodeConfig(port=0, spool=tmp_path / "s", metrics_port=busy.getsockname()[1])
        with pytest.raises(ConfigError, match=r"metrics port 127\.0\.0\.1:"):
            Node(cfg, engine=engine).start()
    with pytest.raises(ConfigError, match="metrics_bind"):
        NodeConfig(metrics_bind="localhost")
