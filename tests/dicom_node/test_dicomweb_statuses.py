"""DICOMweb delivery against a real local HTTP(S) server that answers what a broken or
misconfigured archive answers: 5xx, 429, 408, a certificate from another CA or for another host,
and a bearer token to check. Orthanc (``test_dicomweb.py``) cannot be made to answer these."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from node_helpers import write_series

from ugss.dicom_node.config import Destination, NodeConfig
from ugss.dicom_node.db import OutboxItem
from ugss.dicom_node.dicomweb import stow_files


@dataclass
class Archive:
    """A STOW-RS endpoint on loopback that answers ``status`` and records what it received."""

    status: int = 200
    headers: list[dict[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]


def _handler(archive: Archive) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name for a POST handler
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            archive.headers.append(dict(self.headers))
            body = json.dumps({}).encode() if archive.status == 200 else b"busy"
            self.send_response(archive.status)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def serve() -> Iterator:
    servers: list[ThreadingHTTPServer] = []

    def start(archive: Archive, tls: ssl.SSLContext | None = None) -> Archive:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(archive))
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        archive.server = server
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return archive

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def result_file(tmp_path_factory) -> Path:
    return write_series(tmp_path_factory.mktemp("web") / "s", slices=2, size=32)[0]


def _send(url: str, path: Path, tmp_path: Path, **config) -> tuple:
    item = OutboxItem(1, 1, "web", str(path), "1.2.840.10008.5.1.4.1.1.2", "1.2.3", 0)
    cfg = NodeConfig(spool=tmp_path / "spool", web_timeout_s=5.0, **config)
    (result,) = stow_files(Destination.parse(f"web={url}"), [item], cfg)
    return result


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_server_errors_and_busy_answers_are_retried(serve, result_file, tmp_path, status):
    archive = serve(Archive(status))
    result = _send(f"http://127.0.0.1:{archive.port}/dicom-web", result_file, tmp_path)
    assert not result.ok and not result.permanent  # the outbox tries again with its backoff
    assert result.error.startswith(f"HTTP {status}")
    assert len(archive.headers) == 1  # one request: dicomweb-client's own retries are off


@pytest.mark.parametrize("status", [400, 403, 409])
def test_other_client_errors_fail_the_item_at_once(serve, result_file, tmp_path, status):
    archive = serve(Archive(status))
    result = _send(f"http://127.0.0.1:{archive.port}/dicom-web", result_file, tmp_path)
    assert not result.ok and result.permanent and result.error.startswith(f"HTTP {status}")


def test_a_bearer_token_is_read_from_its_file_and_sent(serve, result_file, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    token.chmod(0o600)
    archive = serve(Archive(200))
    url = f"http://127.0.0.1:{archive.port}/dicom-web"
    result = _send(url, result_file, tmp_path, web_auth="bearer", web_secret_file=token)
    assert result.ok, result.error
    assert archive.headers[0]["Authorization"] == "Bearer tok-123"
    assert archive.headers[0]["Content-Type"].startswith("multipart/related")


def _tls_server_context(certs: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["srv.pem"], certs["srv.key"])
    return ctx


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory) -> tuple[dict[str, Path], dict[str, Path]]:
    from test_dcmtk import _certificates

    return _certificates(tmp_path_factory.mktemp("ca1")), _certificates(
        tmp_path_factory.mktemp("ca2")
    )


@pytest.mark.integration  # openssl makes the certificates
def test_the_ca_bundle_decides_whom_to_trust(serve, result_file, tmp_path, two_cas):
    ours, other = two_cas
    archive = serve(Archive(200), tls=_tls_server_context(ours))
    url = f"https://127.0.0.1:{archive.port}/dicom-web"
    trusted = _send(url, result_file, tmp_path, web_ca_bundle=ours["ca.pem"])
    assert trusted.ok, trusted.error
    for bundle in (other["ca.pem"], None):  # another CA's bundle, or the system CAs
        refused = _send(url, result_file, tmp_path, web_ca_bundle=bundle)
        assert not refused.ok and not refused.permanent  # retried: a certificate can be fixed
        assert refused.error.startswith("TLS:") and "certificate verify failed" in refused.error
    assert len(archive.headers) == 1  # nothing was sent over an unverified connection


@pytest.mark.integration
def test_a_certificate_for_another_host_is_refused(serve, result_file, tmp_path, two_cas):
    ours, _ = two_cas
    archive = serve(Archive(200), tls=_tls_server_context(ours))
    url = f"https://localhost:{archive.port}/dicom-web"  # the certificate names 127.0.0.1 only
    refused = _send(url, result_file, tmp_path, web_ca_bundle=ours["ca.pem"])
    assert not refused.ok and refused.error.startswith("TLS:"), refused.error
    assert "localhost" in refused.error or "match" in refused.error
    assert archive.headers == []
