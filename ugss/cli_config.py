"""Typer options made from the config fields declared with ``ugss.options.option``.

``@config_options(DataConfig, OptimConfig, …)`` gives a command one option per such field and
hands their values to the command as ``**options`` (keyed by field name, lists as tuples,
inverted flags already turned into the field's value), so the command and its configs cannot
drift apart. ``unset=True`` (the node: flags override a TOML file) makes every option default to
None, meaning "not given"; its help then names the field's default.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ugss.options import OptionSpec, option_fields, optional_inner

_SCALARS = (str, int, float, bool, Path)


def _cli_type(hint: Any) -> Any:
    """The type typer parses for a field of type ``hint`` (before making it optional)."""
    hint = optional_inner(hint)
    if hint in _SCALARS:
        return hint
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a repeatable option
        args = typing.get_args(hint)
        return list[args[0] if args and args[0] in _SCALARS else str]
    return str  # parsed by the config (e.g. Peer, Destination)


def _with_default(help_text: str, default: Any) -> str:
    """``help_text (default X)`` unless the text names its default or there is none to name."""
    if "default" in help_text or default in (None, (), "") or isinstance(default, bool):
        return help_text
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    stem, stop = (help_text[:-1], ".") if help_text.endswith(".") else (help_text, "")
    return f"{stem} (default {shown}){stop}"


def _parameter(field, spec: OptionSpec, hint: Any, unset: bool) -> inspect.Parameter:
    kind = _cli_type(hint)
    default = None if field.default is dataclasses.MISSING else field.default
    if spec.invert:  # --no-x: given = True means the field is False
        kind, value, help_text = bool, False, spec.help
    elif unset:
        kind, value, help_text = kind | None, None, _with_default(spec.help, default)
    else:
        value = list(default) if isinstance(default, tuple) else default
        if typing.get_origin(kind) is list or value is None:
            kind = kind | None
        help_text = spec.help
    flags = spec.flags
    if not flags and kind is bool and value is False:  # an off-by-default switch: one flag
        flags = ("--" + field.name.replace("_", "-"),)
    info = typer.Option(*flags, help=help_text, metavar=spec.metavar)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=Annotated[kind, info]
    )


def _fields(classes: tuple[type, ...]) -> Iterator[tuple[Any, OptionSpec, Any]]:
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f, spec in option_fields(cls):
            yield f, spec, hints[f.name]


def config_option(cls: type, name: str, *, unset: bool = False) -> Any:
    """The annotated type of field ``name``'s option, for a command that takes just that one
    (``ugss-node status --spool``): the same flags and help as ``config_options`` gives."""
    for f, spec, hint in _fields((cls,)):
        if f.name == name:
            return _parameter(f, spec, hint, unset).annotation
    raise KeyError(f"{cls.__name__}.{name} is not declared with option()")


def config_options(
    *classes: type, unset: bool = False, before: str = "quiet"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: add the config fields' options to a command (see the module docstring).

    The generated options are listed in ``--help`` before the command's own ``before`` option
    (the shared ``--quiet``/``--verbose``/``--version`` stay last).
    """
    found = list(_fields(classes))

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in sig.parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        made = [_parameter(f, spec, hint, unset) for f, spec, hint in found]
        clash = {p.name for p in own} & {p.name for p in made}
        if clash:
            raise TypeError(f"{func.__name__}: options declared twice: {sorted(clash)}")
        cut = next((i for i, p in enumerate(own) if p.name == before), len(own))
        params = [*own[:cut], *made, *own[cut:]]
        invert = {f.name for f, spec, _ in found if spec.invert}
        names = {f.name for f, _, _ in found}

        def command(**kwargs: Any) -> Any:
            options = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            for k, v in options.items():
                if k in invert:
                    options[k] = not v
                elif isinstance(v, list):
                    options[k] = tuple(v) if v or not unset else None
            return func(**kwargs, **options)

        command.__name__, command.__doc__ = func.__name__, func.__doc__
        command.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
