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
from typing import Annotated, Any

import typer

from ugss.cli_config import config_option, config_options
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

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file with any of the options below (flat keys)."),
]
SpoolOpt = config_option(NodeConfig, "spool", unset=True)


@app.callback()
@config_options(NodeConfig, unset=True, before="print_config")
def serve(
    ctx: typer.Context,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the effective configuration and exit.")
    ] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    version: VersionOpt = False,
    **options: Any,
) -> None:
    """Run the node until interrupted (SIGINT/SIGTERM); or a subcommand, see below."""
    # every option but these is a field of NodeConfig (ugss.dicom_node.config) and its help
    if ctx.invoked_subcommand is not None:
        return
    options["provider"] = provider_for(device, options["provider"])
    cfg = load_config(config, **options)
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
