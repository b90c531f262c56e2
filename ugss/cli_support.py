"""The conventions every UGSS command shares, defined once.

- errors: a ``UGSSError`` or a usage error (unknown option, value out of range, missing
  argument) becomes one ``Error: ...`` line on stderr; usage errors exit 2;
- options: ``-h``/``--help``, ``--version``, ``-v``/``--verbose`` (the project's debug lines, not
  matplotlib's), ``-q``/``--quiet``, ``--threads`` (0 = all cores), ``--device`` (auto | cpu |
  cuda; for onnxruntime the short form of ``--provider``);
- help: value types a user reads (no ``<bool>`` after a flag, no ``<list[str]>``);
- output locations: checked (created and written to) before any work starts.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from ugss import __version__
from ugss.errors import InputError, UGSSError
from ugss.options import THREADS_HELP

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
DEVICES = ("auto", "cpu", "cuda")
# third-party loggers that flood -v with their own DEBUG lines
NOISY_LOGGERS = ("matplotlib", "PIL", "h5py", "numexpr", "urllib3", "asyncio")


def _readable_type(shown: str | None) -> str | None:
    """``<list[str]>`` → ``<str>...``, ``<int range>`` → ``<int>`` (the range is shown beside)."""
    if shown is None:
        return None
    shown = re.sub(r"<list\[(\w+)\]>", r"<\1>...", shown)
    return re.sub(r"<(\w+) range>", r"<\1>", shown)


def _readable_help(params) -> None:
    """Help without Python's words: no ``<bool>`` after a flag, no ``<list[str]>``."""
    for param in params:
        if param is None:
            continue
        if isinstance(param, TyperOption) and param.metavar is None and param.is_flag:
            param.metavar = ""
        if isinstance(param, TyperOption) and param.metavar is not None:
            continue  # an option's metavar is its type column
        display = param.display_type_rich
        param.display_type_rich = lambda ctx, _display=display: _readable_type(_display(ctx))


class Command(TyperCommand):
    """Help as users of other tools read it: ``ugss-x [OPTIONS] INPUT...`` (no ``{input}``),
    no ``<bool>`` placeholder after a flag, no ``<list[str]>``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _readable_help(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _readable_help([option])
        return option

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not isinstance(param, TyperArgument):
                continue
            name = (param.metavar or param.name or "arg").upper()
            name += "..." if param.nargs != 1 else ""
            pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    """A command with subcommands (``ugss-node``), its help without ``<bool>`` either."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _readable_help(self.params)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        _readable_help([option])
        return option


class App(typer.Typer):
    """``typer.Typer`` whose commands are ``Command``s and whose groups are ``Group``s."""

    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", Command)
        return super().command(*args, **kwargs)

    def callback(self, *args, **kwargs):
        kwargs.setdefault("cls", Group)
        return super().callback(*args, **kwargs)


def make_app(help_text: str | None, **kwargs) -> typer.Typer:
    """An ``App`` with the shared settings (``-h``, no shell-completion options)."""
    return App(add_completion=False, context_settings=CONTEXT_SETTINGS, help=help_text, **kwargs)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ugss {__version__}")
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version",
        callback=_print_version,
        is_eager=True,
        expose_value=True,
        help="Print the version and exit.",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("-v", "--verbose", help="Show UGSS's debug lines (log of each stage).")
]
QuietOpt = Annotated[
    bool, typer.Option("-q", "--quiet", help="Print nothing but warnings and errors.")
]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=0, help=THREADS_HELP, metavar="INT")]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Where the model runs: auto, cpu or cuda (auto: the GPU when there is one).",
        metavar="DEVICE",
        show_default=False,
    ),
]


def check_device(device: str | None) -> None:
    if device is not None and device not in DEVICES:
        raise InputError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")


def provider_for(device: str | None, provider: str | None) -> str | None:
    """The onnxruntime provider of ``--device`` (the familiar name: auto, cpu, cuda) or of
    ``--provider`` (the finer choice, tensorrt too); ``None`` when neither is given."""
    check_device(device)
    if device is not None and provider is not None and device != provider:
        raise InputError(f"--device {device} and --provider {provider} disagree: give one")
    return provider or device


def threads_or_none(threads: int) -> int | None:
    """``--threads``: 0 means all cores (``None`` for libraries that pick them themselves)."""
    return threads or None


def run_cli(app: typer.Typer, args: list[str] | None = None, prog: str | None = None) -> None:
    """Run a typer app; any error becomes one ``Error: ...`` line on stderr and an exit code."""
    command = typer.main.get_command(app)
    prog = prog or Path(sys.argv[0]).name or "ugss"
    try:
        code = command.main(args=args, prog_name=prog, standalone_mode=False)
    except UGSSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except ClickException as exc:  # usage errors: unknown option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else prog  # ugss-node status: its own help
        print(f"Error: {exc.format_message().rstrip('.')} (see {where} --help)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def setup_logging(verbose: bool, quiet: bool = False, *, default: int = logging.INFO) -> None:
    """The CLI owns logging: UGSS's lines at ``default`` level, its DEBUG lines with
    ``verbose``, warnings only with ``quiet``; other libraries show warnings only."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    level = logging.DEBUG if verbose else logging.WARNING if quiet else default
    logging.getLogger("ugss").setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _unwritable(folder: Path) -> str | None:
    """Create ``folder`` and write a file there: ``None``, or why that cannot be done."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None if os.access(folder, os.W_OK) else "permission denied"


@contextmanager
def new_folders_removed_on_error(*paths: Path) -> Iterator[None]:
    """Folders of ``paths`` (and their missing parents) that do not exist yet are removed again,
    when empty, if the block fails: a check made before the work leaves nothing behind."""
    missing: list[Path] = []
    for path in paths:
        p = Path(path).absolute()
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
    try:
        yield
    except BaseException:
        for folder in sorted(set(missing), key=lambda q: len(q.parts), reverse=True):
            with suppress(OSError):
                folder.rmdir()  # only when empty
        raise


def check_output_dir(path: Path, what: str = "output folder") -> Path:
    """Create ``path`` and prove it writable now, before any work: ``InputError`` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: the {what} exists and is not a folder")
    reason = _unwritable(path)
    if reason is not None:
        raise InputError(f"{path}: cannot write the {what} there ({reason})")
    return path


def check_output_file(path: Path, what: str = "output file") -> Path:
    """A file to be written: its folder is created and writable, the name is not a folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: the {what} is a folder")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        reason: str | None = f"{folder} is not a folder"
    else:
        reason = _unwritable(folder)
    if reason is not None:
        raise InputError(f"{path}: cannot write the {what} there ({reason})")
    return path


def note(message: str, *, quiet: bool = False) -> None:
    """One unwrapped line on stderr (progress notes, summaries), unless ``quiet``."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
