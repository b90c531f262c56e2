"""The storage SCP (PS3.4 Annex B) and Verification SCP (PS3.4 Annex A) with pynetdicom.

Handlers are plain functions bound to events. They never run inference: a C-STORE handler
checks the object, writes it durably to the spool, records it in SQLite and answers; the worker
thread does the rest. ``handle_store`` is the one boundary where failures become statuses.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.dsutils import encode_file_meta
from pynetdicom.presentation import AllStoragePresentationContexts, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from ugss.dicom_node import dimse
from ugss.dicom_node.config import NodeConfig, Peer
from ugss.dicom_node.db import NodeDB
from ugss.dicom_node.dimse import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    OUT_OF_RESOURCES,
    SUCCESS,
    StoreRefusal,
    status_name,
)
from ugss.dicom_node.encoding import check_encoding, inflate_bounded
from ugss.dicom_node.log import event as log_event
from ugss.dicom_node.log import quiet_third_party
from ugss.dicom_node.selection import series_label
from ugss.dicom_node.series import Verdict, check_instance
from ugss.dicom_node.spool import AlreadyStored, Spool
from ugss.errors import ConfigError

# the accept loop looks for a stop request this often: a stopping node waits at most this long
# for its port to close (socketserver's default, 0.5 s, was most of a node's stop time)
SERVE_POLL_S = 0.05

NATIVE_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
COMPRESSED_SYNTAXES = (
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
)


def decodable_syntaxes() -> list[str]:
    """Transfer syntaxes whose pixel data this installation can decode (PS3.5 Annex A)."""
    from pydicom.pixels import get_decoder

    out = [str(ts) for ts in NATIVE_SYNTAXES]
    for ts in COMPRESSED_SYNTAXES:
        try:
            if get_decoder(ts).is_available:
                out.append(str(ts))
        except NotImplementedError:
            continue
    return out


@dataclass
class ReceiveStats:
    """Counters for status and benchmarks (thread-safe increments)."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    refused: int = 0
    rejected_associations: int = 0
    stalled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


@dataclass(frozen=True)
class AccessPolicy:
    """Called-AE check and calling-AE allow-list with hosts (empty list: any peer)."""

    ae_title: str
    peers: tuple[Peer, ...]

    def refusal(self, called: str, calling: str, host: str) -> int | None:
        """The A-ASSOCIATE-RJ diagnostic (PS3.8 9.3.4), or None when allowed."""
        if called.strip() != self.ae_title:
            return dimse.DIAG_CALLED_AE_NOT_RECOGNIZED
        if self.peers and not any(p.matches(calling, host) for p in self.peers):
            return dimse.DIAG_CALLING_AE_NOT_RECOGNIZED
        return None


def handle_requested(event: evt.Event, policy: AccessPolicy, stats: ReceiveStats) -> None:
    """EVT_REQUESTED: reject before negotiation when the AE titles or host do not fit."""
    assoc = event.assoc
    rq = assoc.requestor.primitive
    called, calling = str(rq.called_ae_title).strip(), str(rq.calling_ae_title).strip()
    host = assoc.requestor.address
    diagnostic = policy.refusal(called, calling, host)
    if diagnostic is None:
        log_event("association", level=logging.DEBUG, calling_ae=calling, host=host)
        return
    stats.add("rejected_associations")
    reason = "called AE" if diagnostic == dimse.DIAG_CALLED_AE_NOT_RECOGNIZED else "calling AE"
    log_event(
        "association_rejected", level=logging.WARNING, reason=f"{reason} not recognized",
        called_ae=called, calling_ae=calling, host=host,
    )  # fmt: skip
    assoc.acse.send_reject(dimse.REJECT_PERMANENT, dimse.SOURCE_SERVICE_USER, diagnostic)
    assoc.kill()


def handle_echo(event: evt.Event) -> int:
    """C-ECHO (PS3.4 A.4)."""
    return SUCCESS


@dataclass(frozen=True)
class ReceiveLimits:
    """Per-peer budgets (``NodeConfig``): beyond them a store is refused with 0xA700."""

    series_per_hour: int = 120
    slices_per_series: int = 1000
    series_voxels: int = 120_000_000

    @classmethod
    def from_config(cls, config: NodeConfig) -> ReceiveLimits:
        return cls(
            config.max_series_per_hour, config.max_slices_per_series, config.max_series_voxels
        )


class Receiver:
    """What a C-STORE does: check, write durably, record, then answer.

    Provenance: an instance belongs to the peer (``AE@host``) that sent it first. An instance
    already on disk is a duplicate when its data set is byte-identical and is refused
    (``instance_conflict``) otherwise, whoever resends it; the file is never replaced. A series
    grows only from the address that started it (a PACS may use several AE titles).
    """

    def __init__(
        self,
        spool: Spool,
        db: NodeDB,
        stats: ReceiveStats,
        limits: ReceiveLimits | None = None,
    ) -> None:
        self.spool = spool
        self.db = db
        self.stats = stats
        self.limits = limits or ReceiveLimits()

    def store(self, event: evt.Event) -> int:
        with event.request.DataSet.getbuffer() as raw:  # the data set as received, not copied
            return self._store(event, raw)

    def _store(self, event: evt.Event, raw: memoryview) -> int:
        ts = UID(event.context.transfer_syntax)
        plain = inflate_bounded(raw) if ts.is_deflated else raw
        check_encoding(plain, implicit_vr=ts.is_implicit_VR, little_endian=ts.is_little_endian)
        try:  # the structure is sound (check_encoding); elements are parsed when read
            meta = event.file_meta
            ds = event.dataset
            ds.file_meta = meta
        except Exception:
            raise StoreRefusal(CANNOT_UNDERSTAND, "data set cannot be parsed") from None
        rq = event.request
        try:
            verdict = check_instance(ds, rq.AffectedSOPClassUID, rq.AffectedSOPInstanceUID)
        except StoreRefusal:
            raise
        except Exception as exc:  # an element's value does not decode (lazy parsing)
            raise StoreRefusal(CANNOT_UNDERSTAND, f"undecodable element: {exc}") from None
        calling = str(event.assoc.requestor.ae_title).strip()
        peer = f"{calling}@{event.assoc.requestor.address}"
        if not verdict.keep:
            self._ignore(ds, verdict, calling)
            return SUCCESS
        held = self.spool.instance_path(verdict.series_uid, verdict.sop_uid)
        if held.exists():
            return self._resend(held, raw, verdict, calling, peer)
        voxels = int(ds.Rows) * int(ds.Columns)
        self._admit(verdict, peer, voxels)
        # PS3.10 file: preamble, prefix, file meta, then the data set bytes exactly as received
        header = b"\x00" * 128 + b"DICM" + encode_file_meta(meta)
        try:
            path, _ = self.spool.store(verdict.series_uid, verdict.sop_uid, (header, raw))
        except AlreadyStored as race:  # the same UID stored by another association just now
            return self._resend(race.path, raw, verdict, calling, peer)
        size = len(header) + len(raw)
        rec = self.db.record_instance(
            series_uid=verdict.series_uid, study_uid=verdict.study_uid, sop_uid=verdict.sop_uid,
            path=str(path), size=size, calling_ae=calling, peer=peer, voxels=voxels,
            label=series_label(ds),
        )  # fmt: skip
        self.stats.add("stored" if rec.new else "duplicates")
        if rec.reopened:
            log_event("series_reopened", series=verdict.series_uid, instances=rec.n_instances)
        log_event(
            "instance_received", series=verdict.series_uid,
            sop=verdict.sop_uid, bytes=size, new=rec.new, calling_ae=calling,
        )  # fmt: skip
        return SUCCESS

    def _ignore(self, ds: Dataset, verdict: Verdict, calling: str) -> None:
        """Acknowledged, not kept: the series is listed for its study's report; the header of
        its first instance (no pixel data) is kept so a study of such series can be answered."""
        self.stats.add("ignored")
        log_event(
            "instance_ignored", reason=verdict.reason, series=verdict.series_uid,
            sop=verdict.sop_uid, calling_ae=calling,
        )  # fmt: skip
        new = self.db.record_ignored(
            series_uid=verdict.series_uid, study_uid=verdict.study_uid, reason=verdict.reason,
            label=series_label(ds),
        )  # fmt: skip
        if new:
            try:
                self.spool.store_header(verdict.series_uid, ds)
            except Exception as exc:  # the report then takes its header from another series
                log_event("header_not_kept", level=logging.WARNING, series=verdict.series_uid,
                          reason=f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _admit(self, verdict: Verdict, peer: str, voxels: int) -> None:
        """Ownership and per-peer budgets for a new instance (PS3.4 0xA900 / 0xA700)."""
        budget, limits = self.db.budget(verdict.series_uid, peer), self.limits
        if budget.peer is None:
            if budget.peer_series_last_hour >= limits.series_per_hour:
                raise StoreRefusal(OUT_OF_RESOURCES, "series-per-hour limit of this peer")
            return
        if budget.peer and budget.peer.rpartition("@")[2] != peer.rpartition("@")[2]:
            log_event(
                "instance_conflict", level=logging.WARNING, series=verdict.series_uid,
                sop=verdict.sop_uid, peer=peer, owner=budget.peer, reason="series of another peer",
            )  # fmt: skip
            raise StoreRefusal(DATASET_DOES_NOT_MATCH_SOP_CLASS, "series belongs to another host")
        if budget.n_instances >= limits.slices_per_series:
            raise StoreRefusal(OUT_OF_RESOURCES, "slices-per-series limit")
        if budget.voxels + voxels > limits.series_voxels:
            raise StoreRefusal(OUT_OF_RESOURCES, "voxels-per-series limit")

    def _resend(
        self, held: Path, raw: memoryview, verdict: Verdict, calling: str, peer: str
    ) -> int:
        """An instance already on disk: a duplicate, or a conflicting resend (refused)."""
        if self.spool.holds(held, raw):
            self.stats.add("duplicates")
            log_event("instance_received", series=verdict.series_uid, sop=verdict.sop_uid,
                      bytes=len(raw), new=False, calling_ae=calling)  # fmt: skip
            return SUCCESS
        log_event(
            "instance_conflict", level=logging.WARNING, series=verdict.series_uid,
            sop=verdict.sop_uid, peer=peer, owner="", reason="other content, same UID",
        )  # fmt: skip
        raise StoreRefusal(
            DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID already held with other content"
        )


def handle_store(event: evt.Event, receiver: Receiver) -> int | Dataset:
    """C-STORE (PS3.4 B.2): the single place refusals and errors become DIMSE statuses."""
    try:
        return receiver.store(event)
    except StoreRefusal as refusal:
        status: int | Dataset = refusal.to_dataset()
        code, reason = refusal.status, refusal.reason
    except Exception as exc:  # never let pynetdicom answer 0xC211 with a traceback
        logging.getLogger(__name__).exception("C-STORE handler failed")
        # the database or disk failing is a resource problem the sender may retry (0xA700)
        code = OUT_OF_RESOURCES if isinstance(exc, OSError | sqlite3.Error) else CANNOT_UNDERSTAND
        status = StoreRefusal(code, f"internal error: {type(exc).__name__}").to_dataset()
        reason = str(exc)
    receiver.stats.add("refused")
    sop = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
    log_event(
        "instance_refused", level=logging.WARNING, status=f"0x{code:04X}",
        meaning=status_name(code), reason=reason, sop=sop[:64] if _printable(sop) else "?",
        calling_ae=str(event.assoc.requestor.ae_title).strip(),
    )  # fmt: skip
    return status


def _printable(text: str) -> bool:
    return all(32 <= ord(c) < 127 for c in text)


def tls_context(config: NodeConfig) -> ssl.SSLContext | None:
    """Server-side TLS (PS3.15 B.1 secure transport); client certificates when ``tls_ca``."""
    if not config.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(config.tls_cert), str(config.tls_key))
        if config.tls_ca is not None:
            ctx.load_verify_locations(str(config.tls_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files {config.tls_cert}, {config.tls_key}: {exc}") from None
    return ctx


def make_ae(config: NodeConfig) -> AE:
    """An AE accepting every storage SOP class with the decodable transfer syntaxes."""
    ae = AE(ae_title=config.ae_title)
    syntaxes = decodable_syntaxes()
    ae.supported_contexts = [build_context(Verification)] + [
        build_context(cx.abstract_syntax, syntaxes) for cx in AllStoragePresentationContexts
    ]
    ae.maximum_associations = config.max_associations
    ae.network_timeout = config.network_timeout_s
    ae.acse_timeout = min(30.0, config.network_timeout_s)
    ae.dimse_timeout = config.network_timeout_s
    ae.maximum_pdu_size = 262_144
    return ae


class _QuickAckSocket:
    """A plain TCP socket that asks for an immediate ACK before each read (Linux TCP_QUICKACK).

    Senders that keep Nagle's algorithm on (Debian's DCMTK does) hold each instance's next
    segment until the previous one is acknowledged; with delayed ACKs that costs ~40 ms per
    instance. Everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, bufsize: int) -> bytes:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv(bufsize)

    def recv_into(self, buffer: memoryview, nbytes: int = 0) -> int:
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return self._sock.recv_into(buffer, nbytes)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


# pynetdicom reads a whole PDU into memory, whatever its length field says (up to 4 GiB). The
# node advertises 256 KiB P-DATA PDUs, and an A-ASSOCIATE-RQ of 128 contexts is well under
# 100 KiB; a longer PDU is refused unread (connection closed) so one peer costs at most this.
MAX_PDU_READ = 2 * 2**20
_RECV_CHUNK = 256 * 2**10


class _CappedSocket(AssociationSocket):
    """An association socket that refuses to read a PDU longer than ``MAX_PDU_READ`` and gives
    each PDU ``network_timeout`` seconds in all: a peer that announces 1000 bytes and sends six,
    or drips one byte a second, is dropped with a ``connection_stalled`` line."""

    def recv(self, nr_bytes: int) -> bytearray:
        host = self.assoc.requestor.address
        if nr_bytes > MAX_PDU_READ:
            log_event(
                "pdu_too_long", level=logging.WARNING, bytes=nr_bytes, limit=MAX_PDU_READ,
                host=host,
            )  # fmt: skip
            return bytearray()  # pynetdicom closes the connection (no traceback)
        timeout = float(self.assoc.network_timeout or 60.0)
        deadline = time.monotonic() + timeout
        buf = bytearray(nr_bytes)
        view, got = memoryview(buf), 0
        sock = cast(socket.socket, self.socket)
        try:
            while got < nr_bytes:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                n = sock.recv_into(view[got:], min(nr_bytes - got, _RECV_CHUNK))
                if n == 0:
                    break  # the peer closed: pynetdicom sees a short read
                got += n
        except TimeoutError:
            server = getattr(self.assoc, "_server", None)
            _stalled(getattr(server, "stats", None), host, f"{got}/{nr_bytes} PDU bytes", timeout)
            return bytearray()
        except OSError:
            pass  # reset or closed: a short read, handled by pynetdicom as Evt17
        del view
        return buf if got == nr_bytes else buf[:got]


def _stalled(stats: ReceiveStats | None, host: str, what: str, timeout: float) -> None:
    if stats is not None:
        stats.add("stalled")
    log_event(
        "connection_stalled", level=logging.WARNING, host=host, waited_s=timeout, read=what,
        action="dropped",
    )  # fmt: skip


class _CappedRequestHandler(RequestHandler):
    """Runs in the connection's own thread: the TLS handshake happens here, with a deadline,
    so a silent client never blocks the accept loop (or shutdown)."""

    server: NodeServer

    def handle(self) -> None:
        host = str(self.client_address[0])
        started = False
        try:
            if self.server.ssl_context is not None and not self._handshake(host):
                return
            assoc = self._create_association()  # as RequestHandler.handle does
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            with self.server.counting:  # counted as pending or as running, never as both
                assoc.start()
                self.server.connection_started(host)
                started = True
        finally:
            if not started:
                with self.server.counting:
                    self.server.connection_started(host)

    def _handshake(self, host: str) -> bool:
        raw = cast(socket.socket, self.request)
        timeout = float(self.server.ae.acse_timeout or 30.0)
        raw.settimeout(timeout)
        deadline = threading.Timer(timeout, _shutdown, (raw,))  # whole handshake, not per read
        deadline.daemon = True
        deadline.start()
        t0 = time.monotonic()
        try:
            ctx = cast(ssl.SSLContext, self.server.ssl_context)
            self.request = ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            waited = time.monotonic() - t0
            if isinstance(exc, TimeoutError) or waited >= timeout * 0.95:
                _stalled(self.server.stats, host, "TLS handshake", timeout)
            else:
                log_event("tls_refused", level=logging.WARNING, host=host,
                          reason=type(exc).__name__)  # fmt: skip
            raw.close()
            return False
        finally:
            deadline.cancel()
        self.request.settimeout(self.server.ae.network_timeout)
        return True

    def _create_association(self):  # type: ignore[no-untyped-def]
        assoc = super()._create_association()
        assoc.dul.socket.__class__ = _CappedSocket
        return assoc


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class NodeServer(ThreadedAssociationServer):
    """pynetdicom's threaded server, hardened: every accepted socket has a timeout from its first
    byte, TLS is negotiated in the connection's thread, one IP address holds at most
    ``per_peer`` connections; plain-TCP connections get NODELAY and QUICKACK."""

    daemon_threads = True  # a stalled handshake never holds shutdown
    block_on_close = False
    per_peer = 5
    stats: ReceiveStats

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.RequestHandlerClass = _CappedRequestHandler
        self._pending: dict[str, int] = {}
        self.counting = threading.Lock()
        self.stats = ReceiveStats()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:  # type: ignore[override]
        sock, address = cast(socket.socket, self.socket).accept()
        sock.settimeout(self.ae.network_timeout)  # accept() returns a socket without one
        if self.ssl_context is None and hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _QuickAckSocket(sock), address  # type: ignore[return-value]
        return sock, address  # TLS: wrapped in the connection's thread (_CappedRequestHandler)

    def verify_request(self, request, client_address) -> bool:  # type: ignore[no-untyped-def]
        """At most ``per_peer`` connections per IP address (handshaking or associated)."""
        host = str(client_address[0])
        if self.per_peer >= self.ae.maximum_associations:
            return True  # the global limit answers with A-ASSOCIATE-RJ (PS3.8 9.3.4)
        with self.counting:
            held = self._pending.get(host, 0) + sum(
                1 for a in self.active_associations if a.requestor.address == host
            )
            if held < self.per_peer:
                self._pending[host] = self._pending.get(host, 0) + 1
                return True
        self.stats.add("rejected_associations")
        log_event("connection_refused", level=logging.WARNING, host=host,
                  reason="per-peer connection limit", limit=self.per_peer)  # fmt: skip
        return False

    def connection_started(self, host: str) -> None:
        """The connection's association thread runs (or it ended): no longer pending.
        Called with ``counting`` held."""
        n = self._pending.get(host, 0) - 1
        if n > 0:
            self._pending[host] = n
        else:
            self._pending.pop(host, None)

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """One line, never a traceback per connection."""
        exc = sys.exc_info()[1]
        log_event("connection_error", level=logging.WARNING, host=str(client_address[0]),
                  error=type(exc).__name__)  # fmt: skip


def start_scp(
    config: NodeConfig, receiver: Receiver, stats: ReceiveStats
) -> tuple[AE, ThreadedAssociationServer]:
    """Open the port (non-blocking); returns the AE and its server (``server_address``)."""
    quiet_third_party()  # pynetdicom's lines escaped, without a traceback per connection
    ae = make_ae(config)
    policy = AccessPolicy(config.ae_title, config.peers)
    handlers = [
        (evt.EVT_REQUESTED, handle_requested, [policy, stats]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [receiver]),
    ]
    try:
        server = ae.make_server(
            (config.bind, config.port),
            evt_handlers=handlers,
            ssl_context=tls_context(config),
            server_class=NodeServer,
        )
    except OSError as exc:
        raise ConfigError(f"cannot listen on {config.bind}:{config.port}: {exc.strerror}") from None
    server.per_peer = config.max_associations_per_peer
    server.stats = stats
    serve_in_thread(ae, server, "ugss-node-scp")
    return ae, server


def serve_in_thread(ae: AE, server: ThreadedAssociationServer, name: str) -> None:
    """Run ``server``'s accept loop in a daemon thread, polling every ``SERVE_POLL_S``; it is
    registered with ``ae`` as ``AE.start_server`` does, so ``AE.shutdown()`` stops it."""
    ae._servers.append(server)
    thread = threading.Thread(target=server.serve_forever, args=(SERVE_POLL_S,), name=name)
    thread.daemon = True
    thread.start()


__all__ = [
    "AccessPolicy",
    "NodeServer",
    "ReceiveStats",
    "Receiver",
    "decodable_syntaxes",
    "handle_echo",
    "handle_requested",
    "handle_store",
    "start_scp",
]
