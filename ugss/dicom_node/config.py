"""Node configuration: one frozen dataclass, read from TOML, every key overridable by a CLI flag.

The TOML file is flat; its keys are the flag names with ``_`` for ``-``::

    ae_title = "UGSS"
    bind = "127.0.0.1"
    port = 11112
    peers = ["ORTHANC@127.0.0.1"]                      # calling AE allow-list, AE@host
    destinations = ["pacs=ORTHANC@127.0.0.1:4242",     # name=AE@host:port (C-STORE)
                    "cloud=https://pacs.example/dicom-web"]  # name=URL (DICOMweb STOW-RS)
    quiet_period_s = 10
    spool = "/var/lib/ugss-node"
    select = "best"                                    # or "all"; rules: selection.py
    select_thickness_mm = [0.5, 6.0]

Values are checked here, once: a bad value fails before the node opens a port.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ugss.dicom_node import selection
from ugss.errors import ConfigError
from ugss.known_keys import known_keys
from ugss.options import option, optional_inner
from ugss.runtime.engines import PROVIDER_CHOICES

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2 AE: 16 chars, no backslash


def check_ae_title(value: str, what: str = "AE title") -> str:
    """PS3.5 Table 6.2-1 (AE): 1–16 printable characters, no backslash, not only spaces."""
    value = str(value).strip()
    if not value or not _AE_RE.match(value):
        raise ConfigError(f"{what} {value!r}: must be 1-16 printable characters, no backslash")
    return value


@dataclass(frozen=True)
class Peer:
    """A calling AE that may send to the node, and the host it must connect from."""

    ae_title: str
    host: str

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AE@host``; host ``*`` allows any address (only sensible behind a firewall)."""
        ae, sep, host = str(text).rpartition("@")
        if not sep or not host:
            raise ConfigError(f"peer {text!r}: expected AE@host, e.g. ORTHANC@127.0.0.1")
        if host != "*":
            _check_ip(host, f"peer {text!r}")
        return cls(check_ae_title(ae, f"peer {text!r}"), host)

    def matches(self, ae_title: str, host: str) -> bool:
        return ae_title.strip() == self.ae_title and self.host in ("*", host)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}"


@dataclass(frozen=True)
class Destination:
    """Where results go: a C-STORE SCP (PS3.4 Annex B) or a DICOMweb base URL (STOW-RS,
    PS3.18 10.5) when ``url`` is set."""

    name: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @classmethod
    def parse(cls, text: str) -> Destination:
        """``name=AE@host:port`` or ``name=https://host/dicom-web``."""
        web = re.match(r"^([A-Za-z0-9_.-]+)=(https?://[^\s]+)$", str(text).strip())
        if web:
            name, url = web.groups()
            if "@" in url.split("//", 1)[1].split("/", 1)[0]:
                raise ConfigError(f"destination {name}: no credentials in the URL (use web_*)")
            return cls(name, url=url.rstrip("/"))
        m = re.match(r"^([A-Za-z0-9_.-]+)=(.+)@([^@:]+):(\d+)$", str(text).strip())
        if not m:
            raise ConfigError(
                f"destination {text!r}: expected name=AE@host:port or name=https://host/dicom-web"
            )
        name, ae, host, port = m.groups()
        return cls(name, check_ae_title(ae, f"destination {name}"), host, _check_port(int(port)))

    @property
    def is_web(self) -> bool:
        return bool(self.url)

    def __str__(self) -> str:
        if self.url:
            return f"{self.name}={self.url}"
        return f"{self.name}={self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class NodeConfig:
    """Everything the node needs; defaults listen on loopback and write results to a folder."""

    ae_title: str = option("UGSS", help="This node's AE title; the called AE must match.")
    bind: str = option("127.0.0.1", help="IP address to listen on.")
    port: int = option(11112, help="TCP port to listen on.")
    peers: tuple[Peer, ...] = option(
        (),
        help=(
            "Allowed calling AE and its host, AE@IP (repeat; host '*' allows any). None "
            "given: the destinations' AE@host, or any peer when there are no destinations."
        ),
        flags=("--peer",),
        metavar="AE@IP",
    )
    allow_any_peer: bool = option(
        False,
        help=(
            "Accept any calling AE even when destinations are set (by default the "
            "destinations' AE@host become the allow-list when no --peer is given)."
        ),
        flags=("--allow-any-peer",),
    )
    destinations: tuple[Destination, ...] = option(
        (),
        help=(
            "Where results are sent (repeat): name=AE@host:port (C-STORE) or "
            "name=https://host/dicom-web (STOW-RS; credentials: TOML keys web_*)."
        ),
        flags=("--destination",),
        metavar="DEST",
    )
    spool: Path = option(Path("ugss-node"), help="State folder: instances, node.sqlite, results.")
    spool_limit_mb: int = option(
        20_000,
        help="Refuse instances (0xA700) beyond this spool size in MiB.",
    )
    results: Path | None = option(None, help="Folder for result files (default <spool>/results).")
    model: Path | None = option(
        None,
        help="ONNX model written by ugss-export (default: the bundled model).",
    )
    provider: str = option(
        "cpu",
        help=(
            "onnxruntime execution provider: auto | cpu | cuda | tensorrt (default cpu; "
            "--device is the short form)."
        ),
    )
    triton_url: str | None = option(
        None,
        help="Run the model on a Triton server (host:port); --model is then the model name.",
    )
    mc_samples: int | None = option(
        None,
        help=(
            "0: deterministic (no volume interval); unset: the model's MC samples (default unset)."
        ),
    )
    quiet_period_s: float = option(
        10.0,
        help="Seconds without a new instance that complete a series.",
    )
    overlay: bool = option(
        False,
        help="Also send a secondary-capture overlay series (not for diagnosis).",
        flags=("--overlay/--no-overlay",),
    )
    max_associations: int = option(10, help="Concurrent associations accepted.")
    max_associations_per_peer: int = option(  # connections from one IP; at most max_associations
        5,
        help="Concurrent connections from one IP address, at most max-associations.",
    )
    network_timeout_s: float = option(
        60.0,
        help=(
            "Seconds a silent or stalled peer (idle association, partial PDU, TLS "
            "handshake) is given before it is dropped."
        ),
    )
    max_series_per_hour: int = option(
        120,
        help="New series one peer (AE@host) may start per hour; more get 0xA700.",
    )
    max_slices_per_series: int = option(1000, help="Instances per series.")
    max_series_voxels: int = option(
        120_000_000,
        help="Rows x Columns x slices per series, bounding a job's memory.",
    )
    decode_memory_mb: int = option(
        1024,
        help="Address-space limit of the process that decodes compressed pixel data.",
    )
    decode_timeout_s: float = option(
        120.0,
        help="Seconds that process may take per series before the series is quarantined.",
    )
    retry_base_s: float = option(5.0, help="First delivery retry delay, doubled per try.")
    retry_max_s: float = option(600.0, help="Longest delay between delivery tries.")
    max_attempts: int = option(20, help="Delivery tries before an item is marked failed.")
    retention_h: float = option(
        72.0,
        help="Hours a finished series stays in the spool for late instances.",
    )
    tls_cert: Path | None = option(
        None,
        help="Server certificate (PEM); turns TLS on, with its key.",
    )
    tls_key: Path | None = option(None, help="Private key (PEM) of the TLS server certificate.")
    tls_ca: Path | None = option(
        None,
        help="CA bundle (PEM): require client certificates signed by it.",
    )
    threads: int = option(  # the model's CPU threads; 0 = all cores
        0,
        help="CPU threads of the model (0 = all cores; default 0).",
    )
    metrics_port: int | None = option(  # Prometheus scrape endpoint; off unless set (0: any port)
        None,
        help="Serve Prometheus metrics at http://<metrics-bind>:PORT/metrics (default: off).",
    )
    metrics_bind: str = option("127.0.0.1", help="Address of the metrics endpoint.")
    web_auth: str = "none"  # DICOMweb destinations: none | basic | bearer
    web_user: str | None = None  # basic: the user name
    web_secret_file: Path | None = None  # basic: the password; bearer: the token (one line)
    web_ca_bundle: Path | None = None  # CA bundle (PEM) to verify the server; default: system
    web_timeout_s: float = 30.0
    select: str = option(  # "best": one series per study; "all": every suitable series
        "best",
        help=(
            "Series segmented per study: best (one: soft-tissue axial non-contrast head CT "
            "nearest select_preferred_mm thick) | all (every suitable series). The rules' "
            "keyword lists and thickness range are TOML keys select_* (ugss-node "
            "--print-config lists them)."
        ),
    )
    select_preferred_mm: float = 5.0
    select_thickness_mm: tuple[float, float] = (0.5, 6.0)
    select_sharp_kernels: tuple[str, ...] = selection.SHARP_KERNELS
    select_soft_kernels: tuple[str, ...] = selection.SOFT_KERNELS
    select_contrast_keywords: tuple[str, ...] = selection.CONTRAST_KEYWORDS
    select_head_keywords: tuple[str, ...] = selection.HEAD_KEYWORDS
    select_sharp_noise_hu: float = selection.SHARP_NOISE_HU
    poll_s: float = field(default=0.2, repr=False)

    def __post_init__(self) -> None:
        check_ae_title(self.ae_title)
        _check_ip(self.bind, "bind")
        _check_port(self.port)
        _check_ip(self.metrics_bind, "metrics_bind")
        if self.metrics_port is not None:
            _check_port(self.metrics_port)
        for name in ("quiet_period_s", "retry_base_s", "retry_max_s", "poll_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.network_timeout_s <= 0:
            raise ConfigError(f"network_timeout_s must be > 0, got {self.network_timeout_s}")
        if not 1 <= self.max_associations <= 100:
            raise ConfigError(f"max_associations must be 1..100, got {self.max_associations}")
        if self.max_associations_per_peer < 1:
            raise ConfigError(
                f"max_associations_per_peer must be >= 1, got {self.max_associations_per_peer}"
            )
        if self.max_associations_per_peer > self.max_associations:  # never above the global one
            object.__setattr__(self, "max_associations_per_peer", self.max_associations)
        for name in ("max_series_per_hour", "max_slices_per_series", "max_series_voxels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.decode_memory_mb < 256 or self.decode_timeout_s <= 0:
            raise ConfigError("decode_memory_mb must be >= 256 and decode_timeout_s > 0")
        if self.spool_limit_mb < 1:
            raise ConfigError(f"spool_limit_mb must be >= 1, got {self.spool_limit_mb}")
        if self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.provider not in PROVIDER_CHOICES:
            raise ConfigError(
                f"provider must be one of {', '.join(PROVIDER_CHOICES)}, got {self.provider!r}"
            )
        if self.threads < 0:
            raise ConfigError(f"threads must be >= 0 (0 = all cores), got {self.threads}")
        if self.mc_samples is not None and self.mc_samples < 0:
            raise ConfigError(f"mc_samples must be >= 0, got {self.mc_samples}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both tls_cert and tls_key")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_ca (client certificates) needs tls_cert and tls_key")
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ConfigError(f"destination names must be unique, got {names}")
        self._check_selection()
        self._check_web()

    def _check_web(self) -> None:
        if self.web_auth not in ("none", "basic", "bearer"):
            raise ConfigError(f"web_auth must be none, basic or bearer, got {self.web_auth!r}")
        if self.web_auth != "none" and self.web_secret_file is None:
            raise ConfigError(f"web_auth={self.web_auth} needs web_secret_file")
        if self.web_auth == "basic" and not self.web_user:
            raise ConfigError("web_auth=basic needs web_user")
        if self.web_timeout_s <= 0:
            raise ConfigError("web_timeout_s must be > 0")

    def _check_selection(self) -> None:
        if self.select not in selection.SELECT_MODES:
            raise ConfigError(f"select must be one of {', '.join(selection.SELECT_MODES)}")
        low, high = self.select_thickness_mm
        if not 0 < low <= high:
            raise ConfigError("select_thickness_mm must be [low, high] with 0 < low <= high")
        if self.select_preferred_mm <= 0 or self.select_sharp_noise_hu <= 0:
            raise ConfigError("select_preferred_mm and select_sharp_noise_hu must be > 0")

    @property
    def selection_rules(self) -> selection.SelectionRules:
        return selection.SelectionRules(
            mode=self.select,
            preferred_mm=self.select_preferred_mm,
            thickness_mm=self.select_thickness_mm,
            sharp_kernels=self.select_sharp_kernels,
            soft_kernels=self.select_soft_kernels,
            contrast_keywords=self.select_contrast_keywords,
            head_keywords=self.select_head_keywords,
            sharp_noise_hu=self.select_sharp_noise_hu,
        )

    @property
    def db_path(self) -> Path:
        return self.spool / "node.sqlite"

    @property
    def results_dir(self) -> Path:
        """Where results are written as files (default: ``<spool>/results``)."""
        return self.results if self.results is not None else self.spool / "results"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def to_dict(self) -> dict[str, Any]:
        """The flat TOML form (paths and peers as strings)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "poll_s":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = [v if isinstance(v, int | float) else str(v) for v in value]
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeConfig:
        known = known_keys(cls, data, strict=True, what="configuration")
        return cls(**{k: _convert(k, v) for k, v in known.items()})

    def with_overrides(self, **overrides: Any) -> NodeConfig:
        """A copy with the non-None overrides applied (CLI flags beat the file)."""
        values = {k: _convert(k, v) for k, v in overrides.items() if v is not None}
        return replace(self, **values)


def load_config(path: Path | None, **overrides: Any) -> NodeConfig:
    """TOML file (optional) + flag overrides → a checked ``NodeConfig``."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such configuration file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        cfg = NodeConfig.from_dict(data).with_overrides(**overrides)
    except TypeError as exc:
        raise ConfigError(f"bad configuration value: {exc}") from None
    return with_default_peers(cfg)


def with_default_peers(cfg: NodeConfig) -> NodeConfig:
    """Allow-list on by default: a node that sends results to a PACS accepts images from it only.

    With destinations and no ``peers``, the destinations' ``AE@host`` become the allow-list
    (hosts must then be IP addresses); ``allow_any_peer`` keeps the node open to any sender.
    """
    if cfg.peers or cfg.allow_any_peer or not cfg.destinations:
        return cfg
    peers = tuple(dict.fromkeys(Peer(d.ae_title, d.host) for d in cfg.destinations if not d.is_web))
    if not peers:
        return cfg
    return replace(cfg, peers=peers)


@functools.cache
def _kinds() -> dict[str, Any]:
    """Each NodeConfig field's type without ``| None``; ``tuple`` for the list-valued ones."""
    inner = {name: optional_inner(h) for name, h in typing.get_type_hints(NodeConfig).items()}
    return {name: typing.get_origin(h) or h for name, h in inner.items()}


def _convert(key: str, value: Any) -> Any:
    """A TOML value or a flag's value → the field's type (checked; ``ConfigError`` if not)."""
    if key == "peers":
        return tuple(v if isinstance(v, Peer) else Peer.parse(v) for v in _as_list(key, value))
    if key == "destinations":
        return tuple(
            v if isinstance(v, Destination) else Destination.parse(v) for v in _as_list(key, value)
        )
    if key == "select_thickness_mm":
        pair = tuple(_number(key, v, float) for v in _as_list(key, value))
        if len(pair) != 2:
            raise ConfigError(f"{key} must be [low, high], got {value!r}")
        return pair
    kind = _kinds().get(key)
    if kind is tuple:  # the selection rules' keyword lists, matched upper-case
        return tuple(str(v).strip().upper() for v in _as_list(key, value) if str(v).strip())
    if kind is Path:
        return Path(value).expanduser()
    if kind in (int, float):
        return _number(key, value, kind)
    return value


def _as_list(key: str, value: Any) -> list:
    if isinstance(value, str | Peer | Destination):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise ConfigError(f"{key} must be a list, got {value!r}")


def _number(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if kind is int and out != float(value):
        raise ConfigError(f"{key} must be a whole number, got {value!r}")
    return out


def _check_ip(host: str, what: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{what}: {host!r} is not an IP address") from None
    return host


def _check_port(port: int) -> int:
    if not 0 <= int(port) <= 65535:
        raise ConfigError(f"port must be 0..65535, got {port}")
    return int(port)
