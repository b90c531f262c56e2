"""DICOMweb delivery: STOW-RS (PS3.18 10.5) with ``dicomweb-client``, one request per result.

Same outbox, retries and restart safety as C-STORE (``sender.py``): result SOP Instance UIDs
are deterministic, so a store repeated after a crash or a lost response replaces the same
instance on the server instead of adding one. TLS verification is always on (the system CAs,
or ``web_ca_bundle``); authentication is HTTP basic or a bearer token, the secret read from
``web_secret_file`` at each batch (so a rotated token is picked up without a restart).

Outcomes: 200 (and a 202 without FailedSOPSequence) delivered; 408, 429, 5xx, connection and
TLS errors are retried; any other 4xx (bad request, 401/403 credentials, 404 wrong URL, 409
refused) fails the item at once, with the status in its error.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from ugss.dicom_node.config import Destination, NodeConfig
from ugss.dicom_node.db import OutboxItem
from ugss.dicom_node.dimse import SendResult

RETRIED_STATUSES = {408, 425, 429}


def web_session(config: NodeConfig) -> tuple[requests.Session, dict[str, str]]:
    """A session verifying TLS, with the configured credentials; ``ValueError`` when the
    secret file cannot be read."""
    session = requests.Session()
    session.verify = str(config.web_ca_bundle) if config.web_ca_bundle else True
    session.trust_env = False  # no proxy or netrc from the service's environment
    headers: dict[str, str] = {}
    if config.web_auth != "none" and config.web_secret_file is not None:
        try:
            secret = Path(config.web_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read web_secret_file: {exc.strerror}") from None
        if config.web_auth == "basic":
            session.auth = (str(config.web_user), secret)
        else:
            headers["Authorization"] = f"Bearer {secret}"
    return session, headers


def stow_files(
    dest: Destination, items: Iterable[OutboxItem], config: NodeConfig
) -> list[SendResult]:
    """Store each item's file at ``dest.url`` (STOW-RS); one result per item."""
    items = list(items)
    try:
        session, headers = web_session(config)
    except ValueError as exc:
        return [SendResult(i.id, False, str(exc)) for i in items]
    client = DICOMwebClient(
        url=dest.url, session=session, headers=headers, timeout=config.web_timeout_s
    )
    client.set_http_retry_params(retry=False)  # the outbox retries, with its own backoff
    try:
        return [_stow_one(client, item) for item in items]
    finally:
        session.close()


def _stow_one(client: DICOMwebClient, item: OutboxItem) -> SendResult:
    try:
        ds = pydicom.dcmread(item.path)
    except Exception as exc:
        return SendResult(item.id, False, f"cannot read {item.path}: {exc}")
    try:
        response = client.store_instances(datasets=[ds])
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        permanent = 400 <= status < 500 and status not in RETRIED_STATUSES
        return SendResult(item.id, False, f"HTTP {status} {_reason(exc)}", permanent=permanent)
    except requests.exceptions.SSLError as exc:
        return SendResult(item.id, False, f"TLS: {_tls_reason(exc)}")
    except requests.RequestException as exc:
        return SendResult(item.id, False, f"{type(exc).__name__}: {_first_line(exc)}")
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        reason = failed[0].get("FailureReason", "?")
        return SendResult(item.id, False, f"STOW-RS refused the instance (reason {reason})")
    return SendResult(item.id, True)


def _reason(exc: requests.HTTPError) -> str:
    return str(getattr(exc.response, "reason", "") or "")[:80]


def _tls_reason(exc: BaseException) -> str:
    """The TLS failure itself (``certificate verify failed: …``, a host name mismatch), not
    the layers of requests and urllib3 wrapped around it."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cur.verify_message}"[:200]
        if isinstance(cur, ssl.SSLError):
            return _first_line(cur)
        todo.extend([getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args])
    return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]
