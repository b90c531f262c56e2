"""Command-line options declared once, on the config dataclasses' fields.

A config field that is also a command-line option is declared with :func:`option` instead of a
plain default: its help text, flag names and metavar live in the field's metadata, and
``ugss.cli_config.config_options`` turns every such field into a typer option of the command.
A new setting is therefore one field: the dataclass gets it, the CLI shows it, ``to_dict`` and
``from_dict`` carry it. No typer here, so the configs stay importable without the CLI layer.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

OPTION = "ugss.option"
THREADS_HELP = "CPU threads (0 = all cores)."  # every command's --threads


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line.

    ``flags`` are the option names (default ``--field-name``; a bool without flags that is off
    by default gets the one switch ``--name``, one that is on ``--name/--no-name``).
    ``invert``: a bool field that defaults to True and is switched off by its single flag
    (``calibrate`` ← ``--no-calibrate``).
    """

    help: str
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    invert: bool = False


def option(
    default: Any,
    *,
    help: str,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    invert: bool = False,
) -> Any:
    """A dataclass field that is also a command-line option (see the module docstring)."""
    spec = OptionSpec(help=help, flags=tuple(flags), metavar=metavar, invert=invert)
    return dataclasses.field(default=default, metadata={OPTION: spec})


def option_fields(cls: type) -> list[tuple[dataclasses.Field, OptionSpec]]:
    """The fields of ``cls`` declared with :func:`option`, in declaration order."""
    return [(f, f.metadata[OPTION]) for f in dataclasses.fields(cls) if OPTION in f.metadata]


def optional_inner(hint: Any) -> Any:
    """``X`` for a field type ``X | None``; any other type as it is."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    is_optional = type(None) in typing.get_args(hint) and len(args) == 1
    return args[0] if is_optional else hint
