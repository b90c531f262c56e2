"""``ugss-node``: run the DICOM node, or ``ugss-node status`` to list series, jobs and outbox.

A thin shell: parse, build a ``NodeConfig`` (TOML file, then flags), call the library.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from ugss.cli_support import (
    DeviceOpt,
    QuietOpt,
    VerboseOpt,
    VersionOpt,
    make_app,
    provider_for,
    run_cli,
    setup_logging,
)
from ugss.dicom_node.config import NodeConfig, load_config
from ugss.errors import InputError

app = make_app(
    no_args_is_help=False,
    invoke_without_command=True,
    help_text=(
        "DICOM C-STORE node: receives CT series from a PACS, segments hemorrhage, and sends back "
        "a DICOM-SEG and a Comprehensive 3D SR volume report (optionally a secondary-capture "
        "overlay). Every option may also be set in the --config TOML file under the same name "
        "with '_' for '-' (flags win). Not for clinical use."
    ),
)

_D = NodeConfig()

HELP = {
    "config": "TOML file with any of the options below (flat keys).",
    "ae_title": f"This node's AE title; the called AE must match (default {_D.ae_title}).",
    "bind": f"IP address to listen on (default {_D.bind}).",
    "port": f"TCP port to listen on (default {_D.port}).",
    "peer": "Allowed calling AE and its host, AE@IP (repeat; host '*' allows any). "
    "None given: the destinations' AE@host, or any peer when there are no destinations.",
    "allow_any_peer": "Accept any calling AE even when destinations are set (by default the "
    "destinations' AE@host become the allow-list when no --peer is given).",
    "destination": "Where results are sent (repeat): name=AE@host:port (C-STORE) or "
    "name=https://host/dicom-web (STOW-RS; credentials: TOML keys web_*).",
    "spool": f"State folder: instances, node.sqlite, results (default {_D.spool}).",
    "spool_limit_mb": "Refuse instances (0xA700) beyond this spool size in MiB "
    f"(default {_D.spool_limit_mb}).",
    "results": "Folder for result files (default <spool>/results).",
    "model": "ONNX model written by ugss-export (default: the bundled model).",
    "provider": "onnxruntime execution provider: auto | cpu | cuda | tensorrt (default cpu; "
    "--device is the short form).",
    "triton_url": "Run the model on a Triton server (host:port); --model is then the model name.",
    "mc_samples": "0: deterministic (no volume interval); unset: the model's MC samples.",
    "quiet_period_s": "Seconds without a new instance that complete a series "
    f"(default {_D.quiet_period_s:g}).",
    "overlay": "Also send a secondary-capture overlay series (not for diagnosis).",
    "max_associations": f"Concurrent associations accepted (default {_D.max_associations}).",
    "max_associations_per_peer": "Concurrent connections from one IP address, at most "
    f"max-associations (default {_D.max_associations_per_peer}).",
    "network_timeout_s": "Seconds a silent or stalled peer (idle association, partial PDU, TLS "
    f"handshake) is given before it is dropped (default {_D.network_timeout_s:g}).",
    "max_series_per_hour": "New series one peer (AE@host) may start per hour; more get 0xA700 "
    f"(default {_D.max_series_per_hour}).",
    "max_slices_per_series": f"Instances per series (default {_D.max_slices_per_series}).",
    "max_series_voxels": "Rows x Columns x slices per series, bounding a job's memory "
    f"(default {_D.max_series_voxels}).",
    "decode_memory_mb": "Address-space limit of the process that decodes compressed pixel data "
    f"(default {_D.decode_memory_mb}).",
    "decode_timeout_s": "Seconds that process may take per series before the series is "
    f"quarantined (default {_D.decode_timeout_s:g}).",
    "retry_base_s": f"First delivery retry delay, doubled per try (default {_D.retry_base_s:g}).",
    "retry_max_s": f"Longest delay between delivery tries (default {_D.retry_max_s:g}).",
    "max_attempts": f"Delivery tries before an item is marked failed (default {_D.max_attempts}).",
    "retention_h": "Hours a finished series stays in the spool for late instances "
    f"(default {_D.retention_h:g}).",
    "tls_cert": "Server certificate (PEM); turns TLS on, with its key.",
    "tls_key": "Private key (PEM) of the TLS server certificate.",
    "tls_ca": "CA bundle (PEM): require client certificates signed by it.",
    "threads": "CPU threads of the model (0 = all cores; default 0).",
    "metrics_port": "Serve Prometheus metrics at http://<metrics-bind>:PORT/metrics "
    "(default: off).",
    "metrics_bind": "Address of the metrics endpoint (default 127.0.0.1).",
    "select": "Series segmented per study: best (one: soft-tissue axial non-contrast head CT "
    "nearest select_preferred_mm thick) | all (every suitable series). The rules' keyword lists "
    "and thickness range are TOML keys select_* (ugss-node --print-config lists them).",
}

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help=HELP["config"])]
SpoolOpt = Annotated[Path | None, typer.Option("--spool", help=HELP["spool"])]
OptStr = str | None
OptInt = int | None
OptFloat = float | None
OptPath = Path | None


def _opt(name: str) -> typer.models.OptionInfo:
    return typer.Option(help=HELP[name])


@app.callback()
def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    ae_title: Annotated[OptStr, _opt("ae_title")] = None,
    bind: Annotated[OptStr, _opt("bind")] = None,
    port: Annotated[OptInt, _opt("port")] = None,
    peer: Annotated[list[str] | None, _opt("peer")] = None,
    destination: Annotated[list[str] | None, _opt("destination")] = None,
    allow_any_peer: Annotated[
        bool | None, typer.Option("--allow-any-peer", help=HELP["allow_any_peer"])
    ] = None,
    spool: SpoolOpt = None,
    spool_limit_mb: Annotated[OptInt, _opt("spool_limit_mb")] = None,
    results: Annotated[OptPath, _opt("results")] = None,
    model: Annotated[OptPath, _opt("model")] = None,
    device: DeviceOpt = None,
    provider: Annotated[OptStr, _opt("provider")] = None,
    triton_url: Annotated[OptStr, _opt("triton_url")] = None,
    mc_samples: Annotated[OptInt, _opt("mc_samples")] = None,
    quiet_period_s: Annotated[OptFloat, _opt("quiet_period_s")] = None,
    overlay: Annotated[
        bool | None, typer.Option("--overlay/--no-overlay", help=HELP["overlay"])
    ] = None,
    max_associations: Annotated[OptInt, _opt("max_associations")] = None,
    max_associations_per_peer: Annotated[OptInt, _opt("max_associations_per_peer")] = None,
    network_timeout_s: Annotated[OptFloat, _opt("network_timeout_s")] = None,
    max_series_per_hour: Annotated[OptInt, _opt("max_series_per_hour")] = None,
    max_slices_per_series: Annotated[OptInt, _opt("max_slices_per_series")] = None,
    max_series_voxels: Annotated[OptInt, _opt("max_series_voxels")] = None,
    decode_memory_mb: Annotated[OptInt, _opt("decode_memory_mb")] = None,
    decode_timeout_s: Annotated[OptFloat, _opt("decode_timeout_s")] = None,
    retry_base_s: Annotated[OptFloat, _opt("retry_base_s")] = None,
    retry_max_s: Annotated[OptFloat, _opt("retry_max_s")] = None,
    max_attempts: Annotated[OptInt, _opt("max_attempts")] = None,
    retention_h: Annotated[OptFloat, _opt("retention_h")] = None,
    tls_cert: Annotated[OptPath, _opt("tls_cert")] = None,
    tls_key: Annotated[OptPath, _opt("tls_key")] = None,
    tls_ca: Annotated[OptPath, _opt("tls_ca")] = None,
    select: Annotated[OptStr, _opt("select")] = None,
    threads: Annotated[OptInt, _opt("threads")] = None,
    metrics_port: Annotated[OptInt, _opt("metrics_port")] = None,
    metrics_bind: Annotated[OptStr, _opt("metrics_bind")] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
) -> None:
    """Run the node until interrupted (SIGINT/SIGTERM); or a subcommand, see below."""
    if ctx.invoked_subcommand is not None:
        return
    provider = provider_for(device, provider)
    cfg = load_config(
        config,
        ae_title=ae_title, bind=bind, port=port, peers=peer or None,
        destinations=destination or None, allow_any_peer=allow_any_peer, spool=spool,
        spool_limit_mb=spool_limit_mb,
        results=results, model=model, provider=provider, triton_url=triton_url,
        mc_samples=mc_samples, quiet_period_s=quiet_period_s,
        overlay=overlay, max_associations=max_associations, network_timeout_s=network_timeout_s,
        retry_base_s=retry_base_s, retry_max_s=retry_max_s, max_attempts=max_attempts,
        retention_h=retention_h, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca,
        max_associations_per_peer=max_associations_per_peer,
        max_series_per_hour=max_series_per_hour, max_slices_per_series=max_slices_per_series,
        max_series_voxels=max_series_voxels, decode_memory_mb=decode_memory_mb,
        decode_timeout_s=decode_timeout_s, select=select, threads=threads,
        metrics_port=metrics_port, metrics_bind=metrics_bind,
    )  # fmt: skip
    if print_config:
        typer.echo(json.dumps(cfg.to_dict(), indent=2))
        return
    setup_logging(verbose, quiet)
    os.umask(0o077)  # spool, database and results readable by the service user only
    for noisy in ("pynetdicom", "highdicom", "pydicom"):  # their INFO lines are per PDU/module
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)
    from ugss.dicom_node.node import Node

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = Node(cfg).start()
    node.serve_forever(stop)


@app.command()
def status(
    config: ConfigOpt = None,
    spool: SpoolOpt = None,
    limit: Annotated[int, typer.Option(help="Rows shown per table (newest first).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """List series, jobs and outbox of a node (works while it runs)."""
    from ugss.dicom_node.status import format_status, read_status

    cfg = load_config(config, spool=spool)
    st = read_status(cfg.db_path, limit)
    typer.echo(json.dumps(st.to_dict(), indent=2) if as_json else format_status(st))


@app.command("export-unlabeled")
def export_unlabeled_command(
    out: Annotated[
        Path | None, typer.Argument(help="Folder for the de-identified series (created).")
    ] = None,
    config: ConfigOpt = None,
    spool: SpoolOpt = None,
    seed_file: Annotated[
        Path | None,
        typer.Option(
            help="File whose first line seeds the pseudonyms: the same seed gives the same new "
            "UIDs, names and date shift and skips series already exported; keep it secret "
            "(default: random pseudonyms per export)."
        ),
    ] = None,
    describe: Annotated[
        bool, typer.Option("--describe", help="List the de-identification actions and exit.")
    ] = False,
) -> None:
    """Write the segmented CT series still in the spool, de-identified (dicognito), as DICOM
    series folders for ugss-train --unlabeled OUT. Opt-in: nothing is exported otherwise."""
    from ugss.dicom_node.export_unlabeled import (
        describe_deidentification,
        export_unlabeled,
        read_seed,
    )

    if describe:
        typer.echo(describe_deidentification())
        return
    if out is None:
        raise InputError("export-unlabeled: give the output folder OUT")
    seed = read_seed(seed_file) if seed_file else None
    cfg = load_config(config, spool=spool)
    res = export_unlabeled(cfg.spool, cfg.db_path, out, seed=seed)
    for folder, reason in res.skipped:
        typer.echo(f"skipped {folder}: {reason}")
    typer.echo(f"{len(res.written)} series written to {out}, {len(res.skipped)} skipped")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
