"""Outbox delivery: C-STORE SCU (PS3.4 Annex B) with retries and exponential backoff.

One association per destination and batch, proposing one presentation context per
(SOP class, transfer syntax) pair actually needed (PS3.8 7.1.1.13: an accepted context carries
exactly one transfer syntax). Success and warning statuses (PS3.4 B.2.3: 0xB000, 0xB007,
0xB006) count as delivered; anything else is retried until ``max_attempts``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterable

import pydicom
from pynetdicom import AE
from pynetdicom.presentation import build_context

from ugss.dicom_node.config import Destination, NodeConfig
from ugss.dicom_node.db import NodeDB, OutboxItem
from ugss.dicom_node.dicomweb import stow_files
from ugss.dicom_node.dimse import SendResult
from ugss.dicom_node.log import event as log_event
from ugss.dicom_node.metrics import NodeMetrics

_WARNING_STATUSES = {0xB000, 0xB006, 0xB007}


def is_delivered(status: int) -> bool:
    """PS3.4 B.2.3: success, or a warning (the object was stored)."""
    return status == 0x0000 or status in _WARNING_STATUSES


def send_files(
    dest: Destination,
    items: Iterable[OutboxItem],
    *,
    calling_ae: str,
    timeout_s: float = 30.0,
) -> list[SendResult]:
    """Send the items' files to one destination over one association."""
    items = list(items)
    if not items:
        return []
    datasets = []
    results: list[SendResult] = []
    for item in items:
        try:
            ds = pydicom.dcmread(item.path)
        except Exception as exc:
            results.append(SendResult(item.id, False, f"cannot read {item.path}: {exc}"))
            continue
        datasets.append((item, ds))
    if not datasets:
        return results

    pairs = sorted(
        {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets}
    )
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.connection_timeout = min(timeout_s, 10.0)
    ae.requested_contexts = [build_context(sop, ts) for sop, ts in pairs]
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "no association (unreachable or aborted)"
        return results + [SendResult(item.id, False, why) for item, _ in datasets]
    try:
        for item, ds in datasets:
            try:
                rsp = assoc.send_c_store(ds)
            except Exception as exc:  # e.g. no accepted context for this pair
                results.append(SendResult(item.id, False, f"{type(exc).__name__}: {exc}"))
                continue
            status = int(getattr(rsp, "Status", -1)) if rsp else -1
            if is_delivered(status):
                results.append(SendResult(item.id, True))
            elif status == -1:
                results.append(SendResult(item.id, False, "no response (timeout or abort)"))
            else:
                comment = str(getattr(rsp, "ErrorComment", "") or "")
                results.append(SendResult(item.id, False, f"status 0x{status:04X} {comment}"))
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()
    done = {r.item_id for r in results}
    results += [
        SendResult(i.id, False, "association lost") for i, _ in datasets if i.id not in done
    ]
    return results


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before attempt ``attempts + 1``: base × 2^(attempts-1), capped."""
    return float(min(max_s, base_s * 2 ** max(0, attempts - 1)))


class Sender(threading.Thread):
    """Delivers due outbox items; separate from the worker so a dead peer never delays inference."""

    def __init__(self, config: NodeConfig, db: NodeDB, metrics: NodeMetrics | None = None):
        super().__init__(name="ugss-node-sender", daemon=True)
        self.metrics = metrics
        self.config = config
        self.db = db
        self.destinations = {d.name: d for d in config.destinations}
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.deliver_due()
            except Exception:
                logging.getLogger(__name__).exception("sender loop failed")
                busy = False
            if not busy:
                nxt = self.db.next_outbox_time()
                wait = self.config.poll_s * 5 if nxt is None else max(0.0, nxt - time.time())
                self.wake.wait(min(wait, self.config.poll_s * 5))
                self.wake.clear()

    def deliver_due(self) -> bool:
        """One pass over due items, grouped per destination; True when anything was tried."""
        items = self.db.due_outbox()
        if not items:
            return False
        groups: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in items:
            groups[item.destination].append(item)
        for name, group in groups.items():
            dest = self.destinations.get(name)
            if dest is None:
                results = [
                    SendResult(i.id, False, f"destination {name} not configured") for i in group
                ]
            elif dest.is_web:
                results = stow_files(dest, group, self.config)
            else:
                results = send_files(
                    dest, group, calling_ae=self.config.ae_title,
                    timeout_s=min(30.0, self.config.network_timeout_s),
                )  # fmt: skip
            by_id = {i.id: i for i in group}
            for r in results:
                item = by_id[r.item_id]
                if r.ok:
                    self.db.mark_sent(item.id)
                    self._count(name, "delivered", item)
                    log_event(
                        "delivered", destination=name, sop=item.sop_instance_uid, job=item.job_id,
                        attempt=item.attempts + 1,
                    )  # fmt: skip
                    continue
                attempts = item.attempts + 1
                give_up = r.permanent or attempts >= self.config.max_attempts
                delay = backoff_s(attempts, self.config.retry_base_s, self.config.retry_max_s)
                self.db.mark_retry(item.id, r.error, time.time() + delay, give_up)
                self._count(name, "failed" if give_up else "retrying")
                log_event(
                    "delivery_failed", level=logging.WARNING, destination=name,
                    sop=item.sop_instance_uid, job=item.job_id, attempt=attempts,
                    error=r.error, retry_in_s=None if give_up else round(delay, 1),
                    gave_up=give_up,
                )  # fmt: skip
        return True

    def _count(self, destination: str, outcome: str, item: OutboxItem | None = None) -> None:
        """Metrics: the attempt, and for a delivery the time since the series' last instance."""
        if self.metrics is None:
            return
        turnaround = None
        if item is not None:
            turnaround = time.time() - self.db.job(item.job_id).last_at
        self.metrics.delivery(destination, outcome, turnaround)
